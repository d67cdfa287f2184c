"""The ports a runtime provides. Domain and API code see only these."""
from __future__ import annotations

from typing import Any, Protocol

from chalicelib.db.database import Database


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


class Runtime(Protocol):
    db: Database
    jobs: JobRunner
    agents: AgentChannel
