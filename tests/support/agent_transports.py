"""The two transports the agent loop suite runs over, behind the MemoryTransport test surface
(``push``, ``reports``, ``results``, ``full_syncs``, ``fetch_waits``, ``fail_next``).

``SqsHarness`` is the real ``SqsTransport`` on a moto queue: commands are pushed as SQS
messages and fetched, tracked and deleted by the transport's own code; reports go to an
in-memory control plane. A long poll's wait is handed to the fake clock instead of moto.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from hostagent.memory_transport import MemoryTransport, test_command
from hostagent.protocol import Command, Report
from hostagent.queue_access import FixedQueueAccess
from hostagent.sqs_transport import SqsTransport


class SqsHarness(SqsTransport):
    def __init__(self, sqs: Any, queue_url: str, ping_interval: int | None = None,
                 idle: Callable[[float], Any] | None = None) -> None:
        self.control_plane = MemoryTransport(ping_interval)
        super().__init__(FixedQueueAccess(sqs, queue_url), self.control_plane,
                         max_wait_seconds=0)
        self._sqs, self._url = sqs, queue_url
        self._idle = idle
        self._failures: deque[Exception] = deque()
        self.fetch_waits: list[int] = []
        self._pushed = 0

    def push(self, name: str, args: dict[str, Any] | None = None,
             command_id: str | None = None) -> str:
        self._pushed += 1
        command = test_command(self._pushed, name, args, command_id)
        self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(command))
        return command["id"]

    def fail_next(self, errors: Iterable[Exception]) -> None:
        self._failures.extend(errors)

    def fetch_commands(self, wait_seconds: int) -> list[Command]:
        self._maybe_fail()
        self.fetch_waits.append(wait_seconds)
        commands = super().fetch_commands(0)
        if not commands and self._idle is not None and wait_seconds > 0:
            self._idle(wait_seconds)
        return commands

    def send_report(self, report: Report) -> int | None:
        self._maybe_fail()
        return super().send_report(report)

    def in_flight(self) -> int:
        """Messages received but not deleted yet (their commands were not reported)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    @property
    def reports(self) -> list[Report]:
        return self.control_plane.reports

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.control_plane.results

    @property
    def full_syncs(self) -> list[Report]:
        return self.control_plane.full_syncs

    def _maybe_fail(self) -> None:
        if self._failures:
            raise self._failures.popleft()
