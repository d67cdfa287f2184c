"""The embedded runtime: one process, jobs on an in-process worker pool."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, update

from chalicelib.api.jobs import run_job
from chalicelib.api.registry import operation
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import ApiJob
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

INTERRUPTED = (
    '{"code": "Interrupted", "message": "the control plane stopped while this job was running; '
    'check the resource and submit the call again"}'
)


class ThreadPoolJobRunner:
    def __init__(self, db: Database, workers: int) -> None:
        self._db = db
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aerie-job")

    def submit(self, job_uuid: str) -> None:
        self._pool.submit(self._run, job_uuid)

    def _run(self, job_uuid: str) -> None:
        try:
            run_job(self._db, job_uuid, operation)
        except Exception:  # a worker must outlive any job, even one whose bookkeeping failed
            log.exception("job %s could not be run", job_uuid)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class EmbeddedRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.jobs = ThreadPoolJobRunner(self.db, settings.job_workers)

    def resume_jobs(self) -> int:
        """After a restart: jobs that were running are failed, waiting ones are run."""
        with self.db.session() as session:
            session.execute(
                update(ApiJob).where(ApiJob.state == "Running")
                .values(state="Failed", error=INTERRUPTED, finished_at=utcnow())
            )
            waiting = list(session.scalars(
                select(ApiJob.uuid).where(ApiJob.state == "Waiting").order_by(ApiJob.created_at)
            ))
        for job_uuid in waiting:
            self.jobs.submit(job_uuid)
        return len(waiting)

    def close(self) -> None:
        self.jobs.shutdown()
        self.db.dispose()
