"""Flows in the embedded runtime: chains run on the job's worker thread, agent waits end as
soon as the report is committed, and progress reaches the jobs table in batches."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from chalicelib import events
from chalicelib.agents.commands import COMMAND_FINISHED
from chalicelib.api.jobs import show_progress
from chalicelib.db.database import Database
from chalicelib.flows.agent_waits import finished_outcome
from chalicelib.flows.chains import Chain, ChainLibrary
from chalicelib.flows.local import AgentOutcome, LocalFlowRunner, WaitAbandoned
from chalicelib.flows.outcome import FlowOutcome, FlowProgress, RollbackRecord
from chalicelib.flows.steps import STEPS, StepEnv, load_step_modules

log = logging.getLogger(__name__)


class NotifiedAgentWaiter:
    """Waits for a command's report: ``agent.command.finished`` (published once the report
    committed) carries the command's outcome, so a wait reads nothing; a read of the
    command's row once a second covers an event that did not come."""

    POLL_SECONDS = 1.0
    # A report may come in before its flow starts waiting (the command was sent in a
    # transaction that committed first): its outcome is kept this long for the wait.
    KEEP_SECONDS = 60.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: dict[str, threading.Event] = {}
        self._reported: OrderedDict[str, tuple[float, AgentOutcome]] = OrderedDict()
        self._lock = threading.Lock()
        self._abandoned = False
        self._unsubscribe = events.subscribe(self._on_event, (COMMAND_FINISHED,))

    def _on_event(self, _name: str, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        outcome = AgentOutcome(payload["ok"], payload.get("result"), payload.get("error"))
        with self._lock:
            self._reported[payload["commandUuid"]] = (now, outcome)
            while next(iter(self._reported.values()))[0] < now - self.KEEP_SECONDS:
                self._reported.popitem(last=False)
            woken = self._waiting.get(payload["commandUuid"])
        if woken is not None:
            woken.set()

    def _reported_outcome(self, command_uuid: str) -> AgentOutcome | None:
        with self._lock:
            reported = self._reported.pop(command_uuid, None)
        return reported[1] if reported is not None else None

    def wait(self, command_uuid: str, timeout_seconds: float) -> AgentOutcome | None:
        woken = threading.Event()
        with self._lock:
            self._waiting[command_uuid] = woken
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                outcome = self._reported_outcome(command_uuid)
                if outcome is not None:
                    return outcome
                if self._abandoned:
                    raise WaitAbandoned(command_uuid)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if not woken.wait(min(remaining, self.POLL_SECONDS)):
                    outcome = finished_outcome(self._db, command_uuid)
                    if outcome is not None:
                        return outcome
                woken.clear()
        finally:
            with self._lock:
                self._waiting.pop(command_uuid, None)

    def abandon(self) -> None:
        """End every wait, now and from now on, with WaitAbandoned (the process stops)."""
        with self._lock:
            self._abandoned = True
            woken = list(self._waiting.values())
        for event in woken:
            event.set()

    def close(self) -> None:
        self._unsubscribe()


class ProgressBoard:
    """The latest progress of each running flow, written to its job every ``PERIOD`` in one
    transaction for all of them: a job shows its current step within that period, and a
    thousand flows a second do not cost a thousand extra transactions a second."""

    PERIOD = 0.25

    def __init__(self, db: Database) -> None:
        self._db = db
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aerie-flow-progress",
                                        daemon=True)
        self._thread.start()

    def sink(self, job_uuid: str):
        def show(progress: FlowProgress) -> None:
            with self._lock:
                self._latest[job_uuid] = progress.to_view()
        return show

    def forget(self, job_uuid: str) -> None:
        with self._lock:
            self._latest.pop(job_uuid, None)

    def flush(self) -> int:
        with self._lock:
            due, self._latest = self._latest, {}
        if due:
            with self._db.session() as session:
                show_progress(session, due)
        return len(due)

    def _loop(self) -> None:
        while not self._stop.wait(self.PERIOD):
            try:
                self.flush()
            except Exception:  # progress is a view; the flows go on without it
                log.exception("could not write flow progress; trying again")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LocalFlowEngine:
    def __init__(self, db: Database, env: StepEnv) -> None:
        load_step_modules()
        self._library = ChainLibrary.load()
        self._chains: dict[str, Chain] = {}
        self.waiter = NotifiedAgentWaiter(db)
        self.board = ProgressBoard(db)
        self._runner = LocalFlowRunner(env, self.waiter, transaction=db.transaction)

    def chain(self, name: str) -> Chain:
        if name not in self._chains:
            self._chains[name] = self._library.resolve(name, STEPS)
        return self._chains[name]

    def run(self, chain: str, job_uuid: str, context: dict[str, Any]) -> FlowOutcome | None:
        try:
            return self._runner.run(self.chain(chain), context, self.board.sink(job_uuid))
        except WaitAbandoned:
            return None  # the process stops; the next start finds the job Running
        finally:
            self.board.forget(job_uuid)

    def still_running(self, chain: str, job_uuid: str) -> bool:
        return False  # it ran on a thread of a process that is gone

    def roll_back(self, chain: str, job_uuid: str,
                  context: dict[str, Any]) -> tuple[RollbackRecord, ...]:
        resolved = self.chain(chain)
        return self._runner.roll_back(resolved, context, resolved.steps[-1].name)

    def abandon_waits(self) -> None:
        self.waiter.abandon()

    def close(self) -> None:
        self.board.close()
        self.waiter.close()
