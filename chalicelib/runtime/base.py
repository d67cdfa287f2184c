"""The ports a runtime provides. Domain and API code see only these."""
from __future__ import annotations

from typing import Protocol

from chalicelib.db.database import Database


class JobRunner(Protocol):
    def submit(self, job_uuid: str) -> None:
        """Run the job soon, on some worker; never lose it once this returns."""


class Runtime(Protocol):
    db: Database
    jobs: JobRunner
