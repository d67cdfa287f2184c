"""The ports a runtime provides. Domain and API code see only these."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.db.database import Database

if TYPE_CHECKING:
    from chalicelib.flows.outcome import FlowOutcome, RollbackRecord


class JobRunner(Protocol):
    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        """Queue the (already persisted) job behind the others of its signature; it starts
        in submission order, with at most ``level`` of the signature running at once."""


class AgentChannel(Protocol):
    def deliver_pending(self) -> int:
        """Hand agents the commands queued for them, where agents do not fetch them from the
        database themselves. Returns how many were handed over."""

    def queue_access(self, host_uuid: str) -> dict[str, Any]:
        """Where the host's agent takes its commands from and credentials that allow that
        and nothing else; a Conflict where agents fetch commands over HTTPS instead."""


class FlowEngine(Protocol):
    def run(self, chain: str, job_uuid: str, context: dict[str, Any]) -> FlowOutcome | None:
        """Run the job's flow to its end (showing its progress on the job), or, for a job
        delivered again, go on waiting for the flow it started. None: it still runs, and
        the caller must give up its turn and come back (a Lambda near its deadline)."""

    def still_running(self, chain: str, job_uuid: str) -> bool:
        """Whether the job's flow goes on without the process that started it (a Step
        Functions execution does; an in-process flow dies with its process)."""

    def roll_back(self, chain: str, job_uuid: str,
                  context: dict[str, Any]) -> tuple[RollbackRecord, ...]:
        """Undo a flow its process's death cut off: every step's rollback, last to first
        (how far it got is not known for sure; rollbacks are idempotent and safe for steps
        that never ran)."""


class Runtime(Protocol):
    db: Database
    jobs: JobRunner
    agents: AgentChannel
    flows: FlowEngine | None  # None: this process runs no jobs (aerie up's API process)
