"""The embedded runtime: jobs wait in the in-process operation queue and run on its worker
pool; the jobs table makes the queue durable across a crash. ``EmbeddedRuntime`` is all of
it in one process (tests, and ``aerie up``'s engine process); ``ApiRuntime`` is ``aerie up``'s
API process, which hands the jobs it accepts to the engine process."""
from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import select

from chalicelib.agents.tracker import track
from chalicelib.api.jobs import FlowStillRunning, Lookup, interrupt_job, run_job
from chalicelib.api.registry import operation
from chalicelib.db.database import Database
from chalicelib.db.models import ApiJob
from chalicelib.errors import Conflict
from chalicelib.flows.agent_waits import step_env
from chalicelib.ops import Release, Ticket
from chalicelib.ops.levels import level_of
from chalicelib.ops.local import LocalQueue
from chalicelib.runtime.base import AgentChannel, FlowEngine, JobRunner
from chalicelib.runtime.local_flows import LocalFlowEngine
from chalicelib.runtime.simulated_hosts import SimulatedHosts
from chalicelib.settings import Settings

log = logging.getLogger(__name__)


class QueuedJobRunner:
    def __init__(self, db: Database, workers: int, lookup: Lookup,
                 flows: FlowEngine | None = None, agents: AgentChannel | None = None) -> None:
        self._db = db
        self._lookup = lookup
        self.flows = flows
        self.agents = agents
        self.queue = LocalQueue(workers)

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        self.queue.submit(Ticket(job_uuid, signature, level,
                                 lambda release: self._run(job_uuid, release)))

    def _run(self, job_uuid: str, release: Release) -> None:
        try:
            run_job(self._db, job_uuid, self._lookup, self.flows)
        except FlowStillRunning:  # in this runtime: its flow stopped with the process
            log.warning("job %s stays Running: this process stops while its flow waits for "
                        "a host agent; the next start rolls it back as interrupted", job_uuid)
        finally:
            release()
        if self.agents is not None:
            self.agents.deliver_pending()  # commands the job queued for host agents

    def drain(self, grace_seconds: float) -> int:
        """Start no more jobs (those waiting stay Waiting for the next start) and give the
        running ones ``grace_seconds`` to end; how many still run."""
        self.queue.stop_taking()
        return self.queue.wait_running(grace_seconds)

    def shutdown(self) -> None:
        self.queue.shutdown()


class HostTracker:
    """Every second, disconnects the hosts whose agents stopped reporting."""

    PERIOD = 1.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aerie-host-tracker",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.PERIOD):
            try:
                with self._db.session() as session:
                    track(session)
            except Exception:  # the tracker outlives a bad tick (e.g. the DB restarting)
                log.exception("host tracking failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class AgentsFetchThemselves:
    """Embedded agents long-poll the API, which reads their commands from the database;
    simulated hosts are told at once that a command waits (they would find it within their
    one-second tick, far too late for a flow waiting on them)."""

    def __init__(self, simulated_hosts: SimulatedHosts | None = None) -> None:
        self._simulated_hosts = simulated_hosts

    def deliver_pending(self) -> int:
        if self._simulated_hosts is not None:
            self._simulated_hosts.wake()
        return 0

    def queue_access(self, host_uuid: str) -> dict[str, Any]:
        raise Conflict("this control plane is embedded: its agents fetch their commands over "
                       "HTTPS (without --sqs) and need no queue or AWS credentials",
                       code="NoAgentQueue")


class EmbeddedRuntime:
    def __init__(self, settings: Settings, lookup: Lookup = operation) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self._lookup = lookup
        self.tracker = HostTracker(self.db)
        self.simulated_hosts = SimulatedHosts(self.db)
        self.agents = AgentsFetchThemselves(self.simulated_hosts)
        self.flows = LocalFlowEngine(self.db, step_env(self))
        self.jobs = QueuedJobRunner(self.db, settings.job_workers, lookup, self.flows,
                                    self.agents)

    def resume_jobs(self) -> tuple[int, int]:
        """After a restart: jobs cut off mid-run are failed and rolled back; waiting ones are
        queued again in their original order. Returns (interrupted, requeued)."""
        with self.db.session() as session:
            running = list(session.scalars(
                select(ApiJob.uuid).where(ApiJob.state == "Running")))
            waiting = list(session.execute(
                select(ApiJob.uuid, ApiJob.signature).where(ApiJob.state == "Waiting")
                .order_by(ApiJob.created_at, ApiJob.uuid)))
            levels = {sig: level_of(session, sig) for sig in {w.signature for w in waiting}}
        for job_uuid in running:
            interrupt_job(self.db, job_uuid, self._lookup, self.flows)
        for job_uuid, signature in waiting:
            self.jobs.submit(job_uuid, signature, levels[signature])
        return len(running), len(waiting)

    def start_background(self) -> None:
        """Host tracking and the simulated hosts (``aerie up``; tests start what they need)."""
        self.tracker.start()
        self.simulated_hosts.start()

    def close(self) -> None:
        """Stop: running jobs first, while the simulated hosts still answer them, for up to
        the settings' grace; a flow still waiting for a host agent then stops where it is
        (its job stays Running, and the next start rolls it back)."""
        grace_seconds = self.settings.stop_grace_seconds
        still = self.jobs.drain(grace_seconds)
        if still:
            log.warning("%d jobs still run %g s after the stop began: their waits for host "
                        "agents end now", still, grace_seconds)
        self.flows.abandon_waits()  # also a wait that began after the count
        self.jobs.shutdown()
        self.simulated_hosts.stop()
        self.tracker.stop()
        self.flows.close()
        self.db.dispose()


class ApiRuntime:
    """``aerie up``'s API process: it serves every request and accepts jobs, which run in
    the engine process (``jobs``: the engine's handle, which hands them over)."""

    def __init__(self, settings: Settings, jobs: JobRunner) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.jobs = jobs
        self.agents = AgentsFetchThemselves()
        self.flows = None  # flows run in the engine process

    def close(self) -> None:
        self.db.dispose()
