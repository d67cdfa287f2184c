"""The serverless transport: commands arrive on the host's own SQS queue; reports go to the
control plane's HTTPS API as with the HTTP transport.

A command's message is deleted only once a report carrying its result was accepted, so an
agent that dies mid-command gets the message again after the visibility timeout, and its
journal answers the repeated id without acting twice.
"""
from __future__ import annotations

import json
import logging

from hostagent.protocol import Command, ProtocolError, Report, parse_commands
from hostagent.queue_access import QueueAccess
from hostagent.transport import Transport, TransportError

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 20  # SQS's longest long poll
MAX_MESSAGES = 10


class SqsTransport:
    def __init__(self, queue: QueueAccess, reports: Transport, *,
                 max_wait_seconds: int = MAX_WAIT_SECONDS) -> None:
        self._max_wait = min(max_wait_seconds, MAX_WAIT_SECONDS)
        self._queue = queue
        self._reports = reports
        self._receipts: dict[str, str] = {}  # command id → receipt handle, until reported

    def fetch_commands(self, wait_seconds: int) -> list[Command]:
        sqs, url = self._queue.client()
        try:
            reply = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=MAX_MESSAGES,
                WaitTimeSeconds=max(0, min(wait_seconds, self._max_wait)))
        except Exception as exc:  # noqa: BLE001 - botocore's errors are many; all retryable
            self._queue.forget()
            raise TransportError(f"cannot receive from the host's queue: {exc}") from exc
        commands: list[Command] = []
        for message in reply.get("Messages", []):
            try:
                found, problems = parse_commands({"commands": [json.loads(message["Body"])]})
            except (ValueError, ProtocolError) as exc:
                found, problems = [], [str(exc)]
            receipt = message["ReceiptHandle"]
            for problem in problems:
                log.error("dropping an unreadable command message: %s", problem)
                self._delete(receipt)
            for command in found:
                self._receipts[command["id"]] = receipt
                commands.append(command)
        return commands

    def send_report(self, report: Report) -> int | None:
        interval = self._reports.send_report(report)
        for result in report.get("results", []):
            receipt = self._receipts.pop(result["id"], None)
            if receipt is not None:
                self._delete(receipt)
        return interval

    def _delete(self, receipt: str) -> None:
        try:
            sqs, url = self._queue.client()
            sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        except Exception as exc:  # noqa: BLE001 - it comes back; the journal absorbs it
            log.warning("could not delete a finished command's message (%s); it will be "
                        "delivered again and answered from the journal", exc)

    def close(self) -> None:
        self._reports.close()
