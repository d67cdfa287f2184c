"""How the agent talks to the control plane, and the two ways that can fail."""
from __future__ import annotations

from typing import Protocol

from hostagent.protocol import Command, Report


class TransportError(Exception):
    """The control plane could not be reached or answered 5xx: retry with backoff."""


class RejectedError(Exception):
    """The control plane refused the agent (401/403: a bad token; 404: an unknown host; other
    4xx). Retrying fast will not help; an operator may fix it, so the agent retries slowly."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail

    @property
    def is_auth(self) -> bool:
        return self.status in (401, 403)


class Transport(Protocol):
    def fetch_commands(self, wait_seconds: int) -> list[Command]:
        """Commands for this host, waiting up to ``wait_seconds`` when there are none."""
        ...

    def send_report(self, report: Report) -> int | None:
        """Deliver a report; returns the ping interval the control plane asked for, if any."""
        ...

    def close(self) -> None: ...
