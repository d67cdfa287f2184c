"""The operation-queue contract's two harnesses: the in-process queue, and SQS FIFO (moto)
drained by consumer threads standing in for concurrent Lambda invocations."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3

from chalicelib.ops import Ticket
from chalicelib.ops.local import LocalQueue
from chalicelib.ops.sqs import SqsFifoQueue, consume


@dataclass
class Interval:
    op_id: str
    signature: str
    level: int
    order: int
    start: float = 0.0
    end: float = 0.0


@dataclass
class Recorder:
    """Each operation notes when it started and ended, and how many times it ran."""

    intervals: dict[str, Interval] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def operation(self, op_id: str, signature: str, level: int,
                  seconds: float) -> Callable[[], None]:
        interval = Interval(op_id, signature, level, len(self.intervals))
        self.intervals[op_id] = interval

        def body() -> None:
            interval.start = time.monotonic()
            time.sleep(seconds)
            interval.end = time.monotonic()
            with self.lock:
                self.runs[op_id] = self.runs.get(op_id, 0) + 1
        return body


class LocalHarness:
    name = "local"

    def __init__(self, workers: int = 8) -> None:
        self.queue = LocalQueue(workers)
        self.bodies: dict[str, Callable[[], None]] = {}

    def submit(self, op_id: str, signature: str, level: int, body: Callable[[], None]) -> None:
        self.bodies.setdefault(op_id, body)

        def run(release):
            try:
                self.bodies[op_id]()
            finally:
                release()
        self.queue.submit(Ticket(op_id, signature, level, run))

    def close(self) -> None:
        self.queue.shutdown()


class SqsHarness:
    name = "sqs"

    def __init__(self, workers: int = 8, visibility_timeout: int = 30) -> None:
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.url = self.sqs.create_queue(
            QueueName=f"ops-{time.monotonic_ns()}.fifo",
            Attributes={"FifoQueue": "true", "VisibilityTimeout": str(visibility_timeout)},
        )["QueueUrl"]
        self.queue = SqsFifoQueue(self.sqs, self.url)
        self.bodies: dict[str, Callable[[], None]] = {}
        # moto's in-process SQS is not safe under concurrent calls (a real SQS is): one call
        # at a time keeps its FIFO bookkeeping honest. The operations still run in parallel.
        self.sqs_lock = threading.Lock()
        # In production a redelivered or re-sent operation is recognised by its job's state
        # (Waiting → Running happens once); this set plays that part.
        self.claimed: set[str] = set()
        self.stop = threading.Event()
        self.consumers = [threading.Thread(target=self._consume, daemon=True)
                          for _ in range(workers)]
        for consumer in self.consumers:
            consumer.start()

    def submit(self, op_id: str, signature: str, level: int, body: Callable[[], None]) -> None:
        self.bodies.setdefault(op_id, body)
        with self.sqs_lock:
            self.queue.submit(op_id, signature, level)

    def _run_once(self, op_id: str) -> None:
        with self.sqs_lock:
            if op_id in self.claimed:
                return
            self.claimed.add(op_id)
        self.bodies[op_id]()

    def _consume(self) -> None:
        while not self.stop.is_set():
            with self.sqs_lock:
                reply = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1)
            for message in reply.get("Messages", []):
                consume(message["Body"], self._run_once)
                with self.sqs_lock:
                    self.sqs.delete_message(QueueUrl=self.url,
                                            ReceiptHandle=message["ReceiptHandle"])
            if not reply.get("Messages"):
                time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        for consumer in self.consumers:
            consumer.join(timeout=10)


def wait_until_ran(recorder: Recorder, op_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(op_id not in recorder.runs for op_id in op_ids):
        assert time.monotonic() < deadline, "operations did not all run in time"
        time.sleep(0.005)
