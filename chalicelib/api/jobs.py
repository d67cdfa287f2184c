"""The async-job envelope: a mutating call becomes an ApiJob that waits in its operation
queue, runs on a worker, and is polled by the client."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.orm import Session as DbSession

from chalicelib.api.errors import as_aerie_error
from chalicelib.api.operation import Operation
from chalicelib.api.rendering import render_result
from chalicelib.api.request import ApiRequest
from chalicelib.context import Caller, Context
from chalicelib.db.base import new_uuid, utcnow
from chalicelib.db.database import Database
from chalicelib.db.inventory import wire_value
from chalicelib.db.models import Account, ApiJob
from chalicelib.db.models.identity import ADMIN_ACCOUNT_TYPE
from chalicelib.errors import AerieError, NotFound
from chalicelib.flows.outcome import FlowFailed, final_progress, rollbacks_end
from chalicelib.runtime.base import FlowEngine

log = logging.getLogger(__name__)

Lookup = Callable[[str], Operation]

INTERRUPTED = AerieError(
    "the control plane stopped while this operation was running; it was rolled back where "
    "it could be: check the resource, then submit the call again", code="Interrupted",
)


# Results that are shown to their owner once, then wiped (an agent's one-time token).
SHOWN_ONCE = ("agentToken", "agentCommand")


_JOBS, _ACCOUNTS = ApiJob.__table__, Account.__table__
_INSERT_JOB = insert(_JOBS)


def create_job(db: DbSession, op: Operation, request: ApiRequest | None,
               caller: Caller) -> tuple[str, str]:
    """A Waiting job for the call: its uuid and the signature of the queue it waits in."""
    payload = request.model_dump(mode="json", by_alias=True) if request is not None else {}
    job_uuid = new_uuid()
    signature = op.signature(request, job_uuid)
    db.execute(_INSERT_JOB, {"uuid": job_uuid, "api_name": op.name,
                             "account_uuid": caller.account_uuid,
                             "request": json.dumps(payload),
                             "resource_uuid": payload.get("uuid"), "signature": signature})
    return job_uuid, signature


_SHOW_PROGRESS = update(_JOBS).where(_JOBS.c.uuid == bindparam("job"),
                                     _JOBS.c.state == "Running").values(
    progress=bindparam("view"))


def show_progress(db: DbSession, views: dict[str, dict[str, Any]]) -> None:
    """Running flows' progress onto their jobs (job uuid → progress view), in one statement;
    a job that ended already shows its final progress, which this leaves alone."""
    if views:
        db.execute(_SHOW_PROGRESS, [{"job": job_uuid, "view": json.dumps(view)}
                                    for job_uuid, view in views.items()])


def queue_position(db: DbSession, job: ApiJob | Row[Any]) -> int:
    """How many operations of its queue are ahead of a waiting job."""
    return db.scalar(select(func.count()).select_from(ApiJob).where(
        ApiJob.signature == job.signature, ApiJob.state.in_(("Waiting", "Running")),
        ApiJob.created_at < job.created_at,
    ))


def job_view(job: ApiJob | Row[Any], position: int | None = None, *,
             reveal: bool = False) -> dict[str, Any]:
    """The job as clients see it; one-time secrets in its result only when ``reveal``."""
    result = json.loads(job.result) if job.result else None
    if isinstance(result, dict) and not reveal:
        result = {k: v for k, v in result.items() if k not in SHOWN_ONCE}
    view = {
        "uuid": job.uuid,
        "apiName": job.api_name,
        "state": job.state,
        "signature": job.signature,
        "resourceUuid": job.resource_uuid,
        "createdAt": wire_value(job.created_at),
        "startedAt": wire_value(job.started_at),
        "finishedAt": wire_value(job.finished_at),
        "result": result,
        "error": json.loads(job.error) if job.error else None,
    }
    if job.progress:
        view["progress"] = json.loads(job.progress)
    if position is not None:
        view["position"] = position
    return view


_VIEWED = select(*(_JOBS.c[name] for name in (
    "uuid", "api_name", "state", "signature", "resource_uuid", "account_uuid", "created_at",
    "started_at", "finished_at", "result", "error", "progress"))).where(
    _JOBS.c.uuid == bindparam("job"))


def get_job(ctx: Context, uuid: str) -> dict[str, Any]:
    job = ctx.session.execute(_VIEWED, {"job": uuid}).first()  # what clients poll: Core
    if job is None or not (ctx.caller.is_admin or job.account_uuid == ctx.caller.account_uuid):
        raise NotFound(f"ApiJob {uuid} does not exist", details={"uuid": uuid})
    position = queue_position(ctx.session, job) if job.state == "Waiting" else None
    owner = job.account_uuid == ctx.caller.account_uuid
    view = job_view(job, position, reveal=owner)
    if owner and isinstance(view["result"], dict) and \
            any(key in view["result"] for key in SHOWN_ONCE):
        _update_job(ctx.session, uuid, result=json.dumps(job_view(job)["result"]))
    return view


@dataclass(frozen=True)
class _RunningJob:
    """What running a job reads of its row (Core, not ORM: every job reads it several
    times, and writes go straight to the row with an UPDATE)."""

    uuid: str
    request: str
    started_at: datetime | None
    flow_context: str | None
    resource_uuid: str | None
    caller: Caller | None  # None: the account that submitted it no longer exists


_JOB_AND_ACCOUNT = select(
    _JOBS.c.uuid, _JOBS.c.request, _JOBS.c.started_at, _JOBS.c.flow_context,
    _JOBS.c.resource_uuid, _ACCOUNTS.c.uuid.label("account_uuid"), _ACCOUNTS.c.type,
).outerjoin(_ACCOUNTS, _ACCOUNTS.c.uuid == _JOBS.c.account_uuid).where(
    _JOBS.c.uuid == bindparam("job"))
_UPDATE_JOB = update(_JOBS).where(_JOBS.c.uuid == bindparam("job"))
_STATE_OF = select(_JOBS.c.state, _JOBS.c.api_name).where(_JOBS.c.uuid == bindparam("job"))
# Waiting → Running, which only one delivery of a job can do (its row count says which).
_START = update(_JOBS).where(_JOBS.c.uuid == bindparam("job"), _JOBS.c.state == "Waiting").values(
    state="Running", started_at=bindparam("now"))


def _running_job(db: DbSession, job_uuid: str) -> _RunningJob:
    row = db.execute(_JOB_AND_ACCOUNT, {"job": job_uuid}).one()
    caller = None if row.account_uuid is None else Caller(
        account_uuid=row.account_uuid, is_admin=row.type == ADMIN_ACCOUNT_TYPE)
    return _RunningJob(row.uuid, row.request, row.started_at, row.flow_context,
                       row.resource_uuid, caller)


def _update_job(db: DbSession, job_uuid: str, **values: Any) -> None:
    db.execute(_UPDATE_JOB, {"job": job_uuid, **values})


def _wiped_request(job: _RunningJob, op: Operation | None) -> dict[str, str]:
    """The job's request with the operation's secret fields wiped, if it had any."""
    if op is None or op.request is None:
        return {}
    secrets = op.request.secret_fields()
    payload = json.loads(job.request)
    if not secrets & payload.keys():
        return {}
    return {"request": json.dumps({k: "<wiped>" if k in secrets else v
                                   for k, v in payload.items()})}


def _record_outcome(db: DbSession, job: _RunningJob, op: Operation | None, *,
                    result: Any = None, error: AerieError | None = None,
                    **also: Any) -> None:
    now = utcnow()
    values = {"finished_at": now, "started_at": job.started_at or now,  # or prepare failed
              **_wiped_request(job, op), **also}
    if error is None:
        values.update(state="Succeeded", result=json.dumps(result))
        if isinstance(result, dict) and result.get("uuid"):
            values["resource_uuid"] = result["uuid"]
    else:
        values.update(state="Failed", error=json.dumps(error.to_dict()))
    _update_job(db, job.uuid, **values)


def _finish(database: Database, job_uuid: str, op: Operation | None, *,
            error: AerieError) -> None:
    with database.session() as db:
        _record_outcome(db, _running_job(db, job_uuid), op, error=error)


def _in_context(database: Database, job_uuid: str, op: Operation,
                work: Callable[[Context, ApiRequest | None], Any]) -> None:
    """Do the work and record its success in one transaction: the outcome and its effects
    commit together or not at all."""
    with database.session() as db:
        job, ctx, request = _job_context(db, job_uuid, op)
        outcome = work(ctx, request)
        db.flush()
        _record_outcome(db, job, op, result=render_result(outcome))


def _job_context(db: DbSession, job_uuid: str,
                 op: Operation) -> tuple[_RunningJob, Context, ApiRequest | None]:
    job, ctx = _job_and_caller(db, job_uuid)
    request = op.request.model_validate(json.loads(job.request)) if op.request else None
    return job, ctx, request


def _job_and_caller(db: DbSession, job_uuid: str) -> tuple[_RunningJob, Context]:
    """The job and a context acting as its caller (for work that needs no request)."""
    job = _running_job(db, job_uuid)
    if job.caller is None:
        raise NotFound("the account that submitted this job no longer exists")
    return job, Context(db, job.caller)


def run_job(database: Database, job_uuid: str, lookup: Lookup,
            flows: FlowEngine | None = None) -> None:
    """Run one delivery of a job to its end; its outcome, good or bad, is recorded on it.

    A first delivery (Waiting) runs it. A delivery that finds it Running means the process
    that ran it died: it is failed as interrupted and handed to its rollback — unless it is
    a flow that goes on without that process (Step Functions), which is waited for again.
    A delivery of a finished job is a duplicate and does nothing.
    """
    with database.session(reads_only=True) as db:
        job = db.execute(_STATE_OF, {"job": job_uuid}).first()
    if job is None or job.state not in ("Waiting", "Running"):
        return
    interrupted, api_name = job.state == "Running", job.api_name
    # A flow job turns Running in the transaction of its prepare, so that one that died
    # before prepare committed is simply run again.
    if not interrupted and not _runs_flow(lookup, api_name):
        with database.session() as db:
            if not db.execute(_START, {"job": job_uuid, "now": utcnow()}).rowcount:
                return  # another delivery of it got there first
    if interrupted:
        op = lookup(api_name)
        if op.flow is None or flows is None or not flows.still_running(op.flow.chain,
                                                                        job_uuid):
            interrupt_job(database, job_uuid, lookup, flows)
            return
    op = None
    try:
        op = lookup(api_name)
        if op.flow is not None:
            _run_flow_job(database, _require(flows, op), job_uuid, op, resuming=interrupted)
            return

        def work(ctx: Context, request: ApiRequest | None) -> Any:
            if op.validate is not None:
                op.validate(ctx, request)
            return op.execute(ctx, request)

        _in_context(database, job_uuid, op, work)
    except FlowStillRunning:
        raise  # the job stays Running; its next delivery waits for the flow again
    except _TakenElsewhere:
        return  # another delivery runs it
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        _finish(database, job_uuid, op, error=as_aerie_error(exc))


def _runs_flow(lookup: Lookup, api_name: str) -> bool:
    try:
        return lookup(api_name).flow is not None
    except Exception:  # noqa: BLE001 - an unknown operation fails in run_job, as ever
        return False


def interrupt_job(database: Database, job_uuid: str, lookup: Lookup,
                  flows: FlowEngine | None = None) -> None:
    """Fail a job whose run was cut off, after giving its operation the chance to undo."""
    op = lookup(_api_name_of(database, job_uuid))
    error = INTERRUPTED
    try:
        if op.flow is not None:
            _roll_back_interrupted_flow(database, _require(flows, op), job_uuid, op)
        elif op.on_interrupted is not None:
            with database.session() as db:
                _, ctx, request = _job_context(db, job_uuid, op)
                op.on_interrupted(ctx, request)
    except Exception as exc:  # noqa: BLE001 - recorded on the job
        failure = as_aerie_error(exc)
        error = AerieError(f"{INTERRUPTED.message}; its rollback failed too: "
                           f"{failure.message}", code="Interrupted")
    _finish(database, job_uuid, op, error=error)


class _TakenElsewhere(Exception):
    """Another delivery of the job turned it Running first (an SQS redelivery while the
    first was preparing): that one runs it."""


class FlowStillRunning(Exception):
    """The job's flow goes on elsewhere past this delivery's deadline: the delivery gives up
    its turn without an outcome, and its message comes back to wait again."""


def _require(flows: FlowEngine | None, op: Operation) -> FlowEngine:
    if flows is None:
        raise AerieError(f"{op.name} runs a flow, but this job runner has no flow engine")
    return flows


def _run_flow_job(database: Database, flows: FlowEngine, job_uuid: str, op: Operation, *,
                  resuming: bool = False) -> None:
    started_with, caller = _prepare_flow(database, job_uuid, op, resuming=resuming)
    try:
        outcome = flows.run(op.flow.chain, job_uuid, started_with)
    except Exception as exc:
        if _may_still_run(flows, op.flow.chain, job_uuid):
            # Waiting for it failed (throttled, a blip), not the flow: wait again next time.
            raise FlowStillRunning(job_uuid) from exc
        # The engine itself failed (e.g. Step Functions refused to start the execution): undo
        # what prepare and any step did, so the resource does not stay in a transient state.
        _roll_back_interrupted_flow(database, flows, job_uuid, op)
        raise
    if outcome is None:
        raise FlowStillRunning(job_uuid)
    with database.session() as db:
        ctx = Context(db, caller)
        result = op.flow.settle(ctx, outcome.context if outcome.succeeded else started_with,
                                outcome.end)
        db.flush()
        progress = json.dumps(final_progress(outcome).to_view())
        job = _running_job(db, job_uuid)
        if outcome.succeeded:
            _record_outcome(db, job, op, result=render_result(result), progress=progress)
        else:
            _record_outcome(db, job, op, error=FlowFailed.from_outcome(outcome),
                            progress=progress)


def _may_still_run(flows: FlowEngine, chain: str, job_uuid: str) -> bool:
    try:
        return flows.still_running(chain, job_uuid)
    except Exception:  # noqa: BLE001 - cannot tell now: the next delivery asks again
        log.warning("cannot tell whether job %s's flow still runs", job_uuid, exc_info=True)
        return True


def _prepare_flow(database: Database, job_uuid: str, op: Operation, *,
                  resuming: bool) -> tuple[dict[str, Any], Caller]:
    """The flow's starting context and the job's caller. A first delivery claims the job
    (Waiting → Running, which only one delivery can do) and has the operation make the
    context, in one transaction; a delivery that resumes a flow still running elsewhere
    gets the one stored."""
    with database.session() as db:
        job, ctx, request = _job_context(db, job_uuid, op)
        if resuming and job.flow_context is not None:
            return json.loads(job.flow_context), ctx.caller
        if not db.execute(_START, {"job": job_uuid, "now": utcnow()}).rowcount:
            raise _TakenElsewhere(job_uuid)
        # No op.validate: that is the submit's check; prepare checks the resource as it is now.
        context = {**op.flow.prepare(ctx, request), "jobUuid": job_uuid}
        _update_job(db, job_uuid, flow_context=json.dumps(context),
                    resource_uuid=job.resource_uuid or context.get("resourceUuid"))
        return context, ctx.caller


def _roll_back_interrupted_flow(database: Database, flows: FlowEngine, job_uuid: str,
                                op: Operation) -> None:
    with database.session() as db:
        stored = db.get(ApiJob, job_uuid).flow_context
    if stored is None:
        return  # it died before its flow began: nothing to undo
    context = json.loads(stored)
    rollbacks = flows.roll_back(op.flow.chain, job_uuid, context)
    with database.session() as db:
        _, ctx = _job_and_caller(db, job_uuid)
        op.flow.settle(ctx, context, rollbacks_end(rollbacks))


def _api_name_of(database: Database, job_uuid: str) -> str:
    with database.session() as db:
        return db.get(ApiJob, job_uuid).api_name
