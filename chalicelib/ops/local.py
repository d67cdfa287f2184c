"""The embedded operation queue: in-process, one FIFO per signature, a shared worker pool.

Durability is not kept here but in the jobs table: the API persists a job before it hands
the ticket to this queue, and the runtime re-submits waiting jobs after a restart.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor

from chalicelib.ops.ticket import Ticket

log = logging.getLogger(__name__)

RECENT_IDS = 100_000  # how many finished ids are remembered to drop late duplicates


class _Signature:
    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[Ticket] = deque()
        self.running = 0


class LocalQueue:
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aerie-op")
        self._lock = threading.Lock()
        self._signatures: dict[str, _Signature] = {}
        self._known: OrderedDict[str, None] = OrderedDict()
        self._running = 0
        self._all_done = threading.Condition(self._lock)

    def submit(self, ticket: Ticket) -> bool:
        """Queue the ticket; False (and nothing queued) if its id was seen already."""
        with self._lock:
            if ticket.id in self._known:
                return False
            self._known[ticket.id] = None
            if len(self._known) > RECENT_IDS:
                self._known.popitem(last=False)
            state = self._signatures.setdefault(ticket.signature, _Signature())
            state.waiting.append(ticket)
            ready = self._take(state)
        self._start(ready)
        return True

    def _start(self, tickets: list[Ticket]) -> None:
        for ticket in tickets:
            try:
                self._pool.submit(self._run, ticket)
            except RuntimeError:  # shutting down: the jobs table still holds it as Waiting
                log.info("not starting %s: the queue is shutting down", ticket.id)

    def _take(self, state: _Signature) -> list[Ticket]:
        """Tickets that may start now, in order; called with the lock held."""
        ready = []
        while state.waiting and state.running < state.waiting[0].level:
            ready.append(state.waiting.popleft())
            state.running += 1
        return ready

    def _run(self, ticket: Ticket) -> None:
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            self._release(ticket.signature)

        with self._lock:
            self._running += 1
        try:
            ticket.run(release)
        except Exception:  # an operation's failure must not wedge its signature
            log.exception("operation %s on %s raised", ticket.id, ticket.signature)
            release()
        finally:
            with self._lock:
                self._running -= 1
                self._all_done.notify_all()

    def _release(self, signature: str) -> None:
        with self._lock:
            state = self._signatures[signature]
            state.running -= 1
            ready = self._take(state)
            if not state.waiting and not state.running:
                del self._signatures[signature]
        self._start(ready)

    def waiting(self, signature: str) -> int:
        with self._lock:
            state = self._signatures.get(signature)
            return len(state.waiting) if state else 0

    def stop_taking(self) -> None:
        """Start nothing more: what waits stays in the jobs table, for the next start."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wait_running(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the operations running to end; how many still
        run."""
        with self._lock:
            self._all_done.wait_for(lambda: self._running == 0, timeout)
            return self._running

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
