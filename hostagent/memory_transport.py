"""An in-process transport: a queue of commands in, captured reports out, failures on demand.

For tests, and for driving many simulated hosts inside one process without HTTP.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from hostagent.protocol import Command, Report


def test_command(number: int, name: str, args: dict[str, Any] | None,
                 command_id: str | None) -> Command:
    """The ``number``-th command a test pushes (``cmd-<number>`` unless it names one)."""
    return {"id": command_id or f"cmd-{number}", "name": name, "args": args or {}}


class MemoryTransport:
    def __init__(self, ping_interval: int | None = None,
                 idle: Callable[[float], Any] | None = None) -> None:
        """``idle(seconds)`` is called when a fetch finds no commands (a long poll's wait),
        e.g. a fake clock's sleep; by default an empty fetch returns at once."""
        self.pending: deque[Command] = deque()
        self.reports: list[Report] = []
        self.fetch_waits: list[int] = []
        self.ping_interval = ping_interval
        self._idle = idle
        self._failures: deque[Exception] = deque()
        self.closed = False
        self._pushed = 0

    def push(self, name: str, args: dict[str, Any] | None = None,
             command_id: str | None = None) -> str:
        self._pushed += 1
        command_id = command_id or f"cmd-{self._pushed}"
        self.pending.append({"id": command_id, "name": name, "args": args or {}})
        return command_id

    def fail_next(self, errors: Iterable[Exception]) -> None:
        """The next calls (fetch or report) raise these, one each, in order."""
        self._failures.extend(errors)

    def fetch_commands(self, wait_seconds: int) -> list[Command]:
        self._maybe_fail()
        self.fetch_waits.append(wait_seconds)
        if not self.pending:
            if self._idle is not None and wait_seconds > 0:
                self._idle(wait_seconds)
            return []
        commands = list(self.pending)
        self.pending.clear()
        return commands

    def send_report(self, report: Report) -> int | None:
        self._maybe_fail()
        self.reports.append(report)
        return self.ping_interval

    def close(self) -> None:
        self.closed = True

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every command result reported so far, in order."""
        return [dict(result) for report in self.reports for result in report["results"]]

    @property
    def full_syncs(self) -> list[Report]:
        return [report for report in self.reports if report["facts"] is not None]

    def _maybe_fail(self) -> None:
        if self._failures:
            raise self._failures.popleft()
