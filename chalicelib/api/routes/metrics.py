"""/v1/metrics: what the operation queues are doing, per operation type."""
from __future__ import annotations

from sqlalchemy import case, func, literal_column, select

from chalicelib.api.operation import Operation
from chalicelib.context import Context
from chalicelib.db.base import utcnow
from chalicelib.db.models import ApiJob


def _seconds(later, earlier):
    """Elapsed seconds between two datetime columns, on SQLite and MySQL alike."""
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _seconds_mysql(later, earlier):
    return func.timestampdiff(literal_column("MICROSECOND"), earlier, later) / 1e6


def operation_metrics(ctx: Context, request: None) -> dict:
    elapsed = _seconds_mysql if ctx.session.bind.dialect.name == "mysql" else _seconds
    finished = ApiJob.finished_at.is_not(None) & ApiJob.started_at.is_not(None)
    run_time = case((finished, elapsed(ApiJob.finished_at, ApiJob.started_at)))
    wait_time = case((ApiJob.started_at.is_not(None),
                      elapsed(ApiJob.started_at, ApiJob.created_at)))
    rows = ctx.session.execute(
        select(
            ApiJob.api_name,
            func.sum(case((ApiJob.state == "Waiting", 1), else_=0)),
            func.sum(case((ApiJob.state == "Running", 1), else_=0)),
            func.sum(case((ApiJob.state == "Succeeded", 1), else_=0)),
            func.sum(case((ApiJob.state == "Failed", 1), else_=0)),
            func.avg(run_time), func.max(run_time), func.avg(wait_time), func.max(wait_time),
        ).group_by(ApiJob.api_name).order_by(ApiJob.api_name)
    )
    operations = {}
    for name, queued, running, succeeded, failed, mean, longest, mean_wait, max_wait in rows:
        operations[name] = {
            "queued": int(queued), "running": int(running), "completed": int(succeeded),
            "failed": int(failed),
            "meanSeconds": round(float(mean), 6) if mean is not None else None,
            "maxSeconds": round(float(longest), 6) if longest is not None else None,
            "meanWaitSeconds": round(float(mean_wait), 6) if mean_wait is not None else None,
            "maxWaitSeconds": round(float(max_wait), 6) if max_wait is not None else None,
        }
    return {"at": utcnow().isoformat(timespec="milliseconds") + "Z", "operations": operations}


OPERATIONS = [
    Operation("GetMetrics", "GET", "/v1/metrics", None, operation_metrics,
              "Per operation type: queued, running, completed, failed, mean and max run and "
              "wait times", admin_only=True, tags=("meta",)),
]
