"""The async-job envelope: a mutating call becomes an ApiJob a worker runs and a client polls."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session as DbSession

from chalicelib.api.errors import as_aerie_error
from chalicelib.api.operation import Operation
from chalicelib.api.rendering import render_result
from chalicelib.api.request import ApiRequest
from chalicelib.context import Caller, Context
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.inventory import wire_value
from chalicelib.db.models import Account, ApiJob
from chalicelib.errors import AerieError, NotFound
from chalicelib.identity.ownership import get_visible

log = logging.getLogger(__name__)


def create_job(db: DbSession, op: Operation, request: ApiRequest | None, caller: Caller) -> ApiJob:
    payload = request.model_dump(mode="json", by_alias=True) if request is not None else {}
    job = ApiJob(api_name=op.name, account_uuid=caller.account_uuid, request=json.dumps(payload),
                 resource_uuid=payload.get("uuid"))
    db.add(job)
    db.flush()
    return job


def job_view(job: ApiJob) -> dict[str, Any]:
    return {
        "uuid": job.uuid,
        "apiName": job.api_name,
        "state": job.state,
        "resourceUuid": job.resource_uuid,
        "createdAt": wire_value(job.created_at),
        "startedAt": wire_value(job.started_at),
        "finishedAt": wire_value(job.finished_at),
        "result": json.loads(job.result) if job.result else None,
        "error": json.loads(job.error) if job.error else None,
    }


def get_job(ctx: Context, uuid: str) -> dict[str, Any]:
    return job_view(get_visible(ctx, ApiJob, uuid))


def _caller_of(db: DbSession, job: ApiJob) -> Caller:
    account = db.get(Account, job.account_uuid)
    if account is None:
        raise NotFound("the account that submitted this job no longer exists")
    return Caller(account_uuid=account.uuid, is_admin=account.is_admin)


def _wipe_secrets(job: ApiJob, op: Operation | None) -> None:
    if op is None or op.request is None:
        return
    secrets = op.request.secret_fields()
    payload = json.loads(job.request)
    if secrets & payload.keys():
        job.request = json.dumps({k: "<wiped>" if k in secrets else v
                                  for k, v in payload.items()})


def _finish(database: Database, job_uuid: str, op: Operation | None, *, result: Any = None,
            error: AerieError | None = None) -> None:
    with database.session() as db:
        job = db.get(ApiJob, job_uuid)
        job.finished_at = utcnow()
        _wipe_secrets(job, op)
        if error is None:
            job.state = "Succeeded"
            job.result = json.dumps(result)
            if isinstance(result, dict) and result.get("uuid"):
                job.resource_uuid = result["uuid"]
        else:
            job.state = "Failed"
            job.error = json.dumps(error.to_dict())


def run_job(database: Database, job_uuid: str,
            lookup: Callable[[str], Operation]) -> None:
    """Run one waiting job to its end. Its outcome, good or bad, is recorded on the job."""
    with database.session() as db:
        job = db.get(ApiJob, job_uuid)
        if job is None or job.state != "Waiting":
            return  # already taken: a redelivered submission is harmless
        job.state, job.started_at = "Running", utcnow()
        api_name, payload = job.api_name, json.loads(job.request)
    op = None
    try:
        op = lookup(api_name)
        with database.session() as db:
            caller = _caller_of(db, db.get(ApiJob, job_uuid))
            request = op.request.model_validate(payload) if op.request else None
            ctx = Context(db, caller)
            if op.validate is not None:
                op.validate(ctx, request)
            outcome = op.execute(ctx, request)
            db.flush()
            result = render_result(outcome)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        _finish(database, job_uuid, op, error=as_aerie_error(exc))
        return
    _finish(database, job_uuid, op, result=result)
