"""What the operation queues are doing, read from the jobs table (the same on both runtimes)."""
from __future__ import annotations

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from chalicelib.db.base import utcnow
from chalicelib.db.models import ApiJob


def _sqlite_seconds(later, earlier):
    """Elapsed seconds between two datetime columns (SQLite has no interval type)."""
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _mysql_seconds(later, earlier):
    return func.timestampdiff(literal_column("MICROSECOND"), earlier, later) / 1e6


def operation_metrics(session: Session) -> dict:
    """Per operation type: queued, running, completed, failed, and run and wait times."""
    elapsed = _mysql_seconds if session.bind.dialect.name == "mysql" else _sqlite_seconds
    finished = ApiJob.finished_at.is_not(None) & ApiJob.started_at.is_not(None)
    run_time = case((finished, elapsed(ApiJob.finished_at, ApiJob.started_at)))
    wait_time = case((ApiJob.started_at.is_not(None),
                      elapsed(ApiJob.started_at, ApiJob.created_at)))
    rows = session.execute(
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
