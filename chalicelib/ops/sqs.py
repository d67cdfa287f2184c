"""The serverless operation queue: SQS FIFO.

- A level-N signature spreads over N message groups (``<signature>#<k>``); SQS withholds a
  group while one of its messages is in flight, so at most N run at once and each group runs
  in order.
- The message's deduplication id is the operation id: a re-sent message is dropped by SQS
  within its 5-minute window, and a redelivered one is recognised by the operation's state.
- The consumer Lambda runs the operation before it returns, so the message stays in flight
  (and the group withheld) for the operation's whole life; the queue's visibility timeout is
  longer than the Lambda's. If the Lambda dies, the message comes back after the visibility
  timeout and ``consume`` sees an operation still marked running: it fails it as interrupted
  and hands it to its rollback instead of running it twice.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

GROUP_ID_LIMIT = 128


def group_id(signature: str, operation_id: str, level: int) -> str:
    slot = int(hashlib.sha1(operation_id.encode()).hexdigest(), 16) % max(level, 1)
    group = f"{signature}#{slot}"
    if len(group) > GROUP_ID_LIMIT:
        group = hashlib.sha256(group.encode()).hexdigest()
    return group


class SqsFifoQueue:
    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def submit(self, operation_id: str, signature: str, level: int) -> None:
        self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps({"operationId": operation_id, "signature": signature}),
            MessageGroupId=group_id(signature, operation_id, level),
            MessageDeduplicationId=operation_id,
        )


def consume(body: str, run: Callable[[str], None]) -> None:
    """Handle one delivered message: run its operation (``run`` decides, from the operation's
    recorded state, whether this is a first delivery, a redelivery or a duplicate)."""
    run(json.loads(body)["operationId"])
