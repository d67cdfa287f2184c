"""The agent loop: full sync at start and every ping interval, long-poll for commands, run
them, report the results; back off on network trouble, retry slowly when refused.

No threads of its own: ``run`` loops over ``step`` until ``stop`` is set, and both the clock
and the sleep are parameters, so tests (and in-process fleets of simulated hosts) drive it.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from hostagent.backoff import Backoff
from hostagent.drivers.base import Driver
from hostagent.executor import CommandExecutor
from hostagent.journal import CommandJournal
from hostagent.protocol import (
    DEFAULT_PING_INTERVAL,
    MAX_RESULTS_PER_REPORT,
    MAX_WAIT_SECONDS,
    Command,
    CommandResult,
    HostFacts,
    VmReport,
)
from hostagent.transport import RejectedError, Transport, TransportError

log = logging.getLogger(__name__)

REJECTED_RETRY_SECONDS = 60.0
POISON_STATUSES = (400, 413, 422)  # the control plane will never accept that report body


class Interrupted(BaseException):  # noqa: N818 - not an error: SIGTERM during a long poll
    """Raised (from a signal handler) to abandon a long poll; nothing is lost by that."""


class Agent:
    def __init__(self, driver: Driver, transport: Transport, *,
                 journal: CommandJournal | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] | None = None, backoff: Backoff | None = None,
                 rejected_retry_seconds: float = REJECTED_RETRY_SECONDS) -> None:
        self.driver = driver
        self.transport = transport
        self.executor = CommandExecutor(driver, journal)
        self.stop = stop if stop is not None else threading.Event()
        self._clock = clock
        self._sleep = sleep if sleep is not None else self.stop.wait
        self.backoff = backoff if backoff is not None else Backoff()
        self.rejected_retry_seconds = rejected_retry_seconds
        self.ping_interval = DEFAULT_PING_INTERVAL
        self.outbox: list[CommandResult] = []  # results not yet acknowledged by a report
        self.fetching = False  # a long poll is in flight (safe to interrupt)
        self._last_sync: float | None = None  # None: a full sync is due now

    def run(self) -> None:
        log.info("agent running with the %s driver", self.driver.name)
        try:
            while not self.stop.is_set():
                self.step()
        except Interrupted:
            pass
        self._flush_outbox()
        log.info("agent stopped")

    def step(self) -> None:
        """One round: a full sync if due, one long poll, the commands it brought."""
        try:
            if self._sync_due():
                self.sync()
            commands = self._fetch()
            if commands:
                self.execute(commands)
            if self.outbox:
                self._report(None, None)
        except RejectedError as exc:
            self._refused(exc)
        except TransportError as exc:
            delay = self.backoff.next_delay()
            log.warning("control plane unreachable (%s); retrying in %.1f s", exc, delay)
            self._last_sync = None  # after reconnecting, tell it everything again
            self._sleep(delay)
        else:
            if self.backoff.failures:
                log.info("reconnected to the control plane after %d failed attempts",
                         self.backoff.failures)
            self.backoff.reset()

    def sync(self) -> None:
        """A full sync: host facts and every VM's state, plus any unacknowledged results."""
        facts, vms = self._observe()
        self._report(facts, vms)
        self._last_sync = self._clock()

    def execute(self, commands: list[Command]) -> None:
        for done, command in enumerate(commands):
            if self.stop.is_set():
                log.info("stopping: leaving %d commands for redelivery", len(commands) - done)
                break
            self.outbox.append(self.executor.execute(command))
        if len(self.outbox) > MAX_RESULTS_PER_REPORT:
            dropped = len(self.outbox) - MAX_RESULTS_PER_REPORT
            log.warning("dropping %d unreported results (the journal still answers "
                        "redeliveries)", dropped)
            del self.outbox[:dropped]

    def _sync_due(self) -> bool:
        return self._last_sync is None or self._clock() >= self._last_sync + self.ping_interval

    def _fetch(self) -> list[Command]:
        assert self._last_sync is not None
        remaining = self._last_sync + self.ping_interval - self._clock()
        wait = max(0, min(MAX_WAIT_SECONDS, math.ceil(remaining)))
        self.fetching = True
        try:
            return self.transport.fetch_commands(wait)
        finally:
            self.fetching = False

    def _observe(self) -> tuple[HostFacts | None, list[VmReport] | None]:
        try:
            return self.driver.facts(), self.driver.list_vms()
        except Exception:  # noqa: BLE001 - report without facts rather than not at all
            log.exception("cannot read the hypervisor's state; reporting without it")
            return None, None

    def _report(self, facts: HostFacts | None, vms: list[VmReport] | None) -> None:
        results = list(self.outbox)
        try:
            interval = self.transport.send_report({"results": results, "facts": facts,
                                                   "vms": vms})
        except RejectedError as exc:
            if exc.status in POISON_STATUSES and results:
                log.error("control plane refused a report (%s); dropping its %d results",
                          exc, len(results))
                del self.outbox[:len(results)]
            raise
        del self.outbox[:len(results)]
        if interval is not None and interval != self.ping_interval:
            log.info("sync period is now %d s", interval)
            self.ping_interval = interval

    def _refused(self, exc: RejectedError) -> None:
        if exc.is_auth:
            log.error("the control plane rejected this agent's token (%s); check --token "
                      "or AERIE_AGENT_TOKEN; retrying in %.0f s", exc, self.rejected_retry_seconds)
        else:
            log.error("the control plane refused this agent (%s); retrying in %.0f s",
                      exc, self.rejected_retry_seconds)
        self._last_sync = None
        self._sleep(self.rejected_retry_seconds)

    def _flush_outbox(self) -> None:
        if not self.outbox:
            return
        try:
            self._report(None, None)
        except (TransportError, RejectedError) as exc:
            log.warning("could not report %d results before stopping (%s); the control "
                        "plane will redeliver those commands", len(self.outbox), exc)
