"""The API about the API: jobs and the OpenAPI document."""
from __future__ import annotations

from sqlalchemy import select

from chalicelib.api.crud import ListRequest, UuidRequest
from chalicelib.api.jobs import get_job, job_view
from chalicelib.api.operation import Operation
from chalicelib.context import Context
from chalicelib.db.models import ApiJob
from chalicelib.identity.ownership import visible


def _list_jobs(ctx: Context, request: ListRequest) -> dict:
    stmt = visible(select(ApiJob), ApiJob, ctx.caller)
    stmt = stmt.order_by(ApiJob.created_at.desc(), ApiJob.uuid)
    jobs = ctx.session.scalars(stmt.offset(request.start).limit(request.limit))
    return {"inventories": [job_view(job) for job in jobs]}


def _document(ctx: Context, request: None) -> dict:
    from chalicelib.api.registry import openapi

    return openapi()


OPERATIONS = [
    Operation("GetApiJob", "GET", "/v1/api-jobs/{uuid}", UuidRequest,
              lambda ctx, r: get_job(ctx, r.uuid),
              "State of an asynchronous call: Waiting, Running, Succeeded (with its result) "
              "or Failed (with its error)", tags=("job",)),
    Operation("QueryApiJob", "GET", "/v1/api-jobs", ListRequest, _list_jobs,
              "Recent jobs, newest first", query_params=("limit", "start"), tags=("job",)),
    Operation("GetOpenApiDocument", "GET", "/v1/openapi.json", None, _document,
              "This API as an OpenAPI 3 document", authentication="none", tags=("meta",)),
]
