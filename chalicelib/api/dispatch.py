"""One HTTP call through one operation: authenticate, validate, then answer or enqueue a job."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session as DbSession

from chalicelib.agents.tokens import agent_token
from chalicelib.agents.tokens import verify as verify_agent
from chalicelib.api.errors import as_aerie_error, error_body, status_of
from chalicelib.api.jobs import create_job
from chalicelib.api.operation import Operation
from chalicelib.api.rendering import render_reply
from chalicelib.api.request import ApiRequest, parse_request
from chalicelib.context import Caller, Context
from chalicelib.errors import InvalidArgument, PermissionDenied, Unauthenticated
from chalicelib.identity.sessions import authenticate
from chalicelib.ops.levels import level_of
from chalicelib.runtime.base import Runtime


@dataclass
class HttpCall:
    headers: dict[str, str]  # lower-case names
    path_params: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, list[str]] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def bearer_token(headers: dict[str, str]) -> str:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "this call needs a session: log in with PUT /v1/accounts/login and send "
            "'Authorization: Bearer <token>'"
        )
    return token.strip()


def _json_body(body: bytes | None) -> dict[str, Any]:
    if not body or not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"the request body is not valid JSON: {exc}",
                              details={"field": "body"}) from None
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object",
                              details={"field": "body"})
    return data


def _query_fields(op: Operation, query: dict[str, list[str]]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(op.query_params))
    if unknown:
        allowed = ", ".join(op.query_params) or "none"
        raise InvalidArgument(
            f"unknown query parameter {unknown[0]!r}; {op.name} takes: {allowed}",
            details={"field": unknown[0]},
        )
    return {name: values if len(values) > 1 else values[0] for name, values in query.items()}


def request_data(op: Operation, call: HttpCall) -> dict[str, Any]:
    data = _json_body(call.body) if op.method in ("POST", "PUT") else {}
    if op.method not in ("POST", "PUT") and call.body and call.body.strip():
        raise InvalidArgument(f"{op.name} takes no request body", details={"field": "body"})
    data.update(_query_fields(op, call.query_params))
    for name, value in call.path_params.items():
        if name in data and data[name] != value:
            raise InvalidArgument(
                f"{name} is given in the path as {value!r} and in the body as {data[name]!r}",
                details={"field": name},
            )
        data[name] = value
    return data


def _parse(op: Operation, call: HttpCall) -> ApiRequest | None:
    data = request_data(op, call)
    if op.request is None:
        if data:
            raise InvalidArgument(f"{op.name} takes no parameters",
                                  details={"field": next(iter(data))})
        return None
    return parse_request(op.request, data)


def _caller(db: DbSession, op: Operation, call: HttpCall) -> Caller | None:
    if op.authentication == "none":
        return None
    if op.authentication == "agent":
        host = verify_agent(db, call.path_params.get("hostUuid", ""),
                            agent_token(call.headers))
        return Caller(account_uuid=host.account_uuid, is_admin=False)
    caller = authenticate(db, bearer_token(call.headers))
    if op.admin_only and not caller.is_admin:
        raise PermissionDenied(f"{op.name} needs an admin account")
    return caller


def dispatch(runtime: Runtime, op: Operation, call: HttpCall) -> Reply:
    """Authentication, validation and a synchronous operation share one short transaction;
    so do a dry run and the job it accepts. A job whose operation checks itself without
    writing is inserted in a transaction of its own, after checks that read beside the
    writer."""
    try:
        if not op.transactional:
            with runtime.db.session() as db:
                caller = _caller(db, op, call)
            request = _parse(op, call)
            ctx = Context(None, caller, database=runtime.db, agents=runtime.agents)
            return Reply(200, render_reply(op.execute(ctx, request)))
        # A read, or a job whose operation checks itself without writing, looks at the
        # database without taking SQLite's writer turn; only the job's insert takes it.
        checks_only = op.method == "GET" or (op.asynchronous and op.validate is not None)
        with runtime.db.session(reads_only=checks_only) as db:
            caller = _caller(db, op, call)
            request = _parse(op, call)
            if not op.asynchronous:
                return Reply(200, render_reply(op.execute(Context(db, caller), request)))
            _validate(db, op, request, caller)
            if not checks_only:  # a dry run took the writer turn: insert the job with it
                job_uuid, signature, level = _accept_job(db, op, request, caller)
        if checks_only:
            with runtime.db.session() as db:
                job_uuid, signature, level = _accept_job(db, op, request, caller)
        runtime.jobs.submit(job_uuid, signature, level)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
        error = as_aerie_error(exc)
        return Reply(status_of(error), error_body(error))
    location = f"/v1/api-jobs/{job_uuid}"
    return Reply(202, {"jobUuid": job_uuid, "location": location}, {"Location": location})


def _validate(db: DbSession, op: Operation, request: ApiRequest | None,
              caller: Caller) -> None:
    # An operation that only changes the database validates by a dry run of itself;
    # one with effects outside it names its own checks.
    (op.validate or op.execute)(Context(db, caller), request)
    db.rollback()  # validation only looks: whatever it touched is discarded


def _accept_job(db: DbSession, op: Operation, request: ApiRequest | None,
                caller: Caller) -> tuple[str, str, int]:
    job_uuid, signature = create_job(db, op, request, caller)
    return job_uuid, signature, level_of(db, signature)
