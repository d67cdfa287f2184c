"""Simulator hosts that live inside the embedded control plane: no agent processes, no HTTP.

Each tick (one second) this runs the pending commands of simulator hosts through the very
command executor and simulator driver an ``aerie-agent --driver simulator`` uses, and sends
the reports due in that tick — hosts are spread evenly over the report interval — in one
batched transaction, which is what lets one process keep 100,000 hosts reporting.
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.agents import commands, tracker
from chalicelib.agents.protocol import ReportedVm
from chalicelib.agents.vm_sync import sync_vms
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand, Host
from chalicelib.globalconfig import get_value
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.executor import CommandExecutor

log = logging.getLogger(__name__)

# Commands whose answer is the host's state: after them a simulated host syncs in full.
SYNCING_COMMANDS = frozenset({"connect", "host.facts", "vm.sync"})
CHUNK = 500  # hosts per statement (well under SQLite's bound-parameter limit)
ADOPTION_LOOKBACK = timedelta(seconds=30)
_COMMANDS, _HOSTS = AgentCommand.__table__, Host.__table__
_PENDING = (select(_COMMANDS.c.uuid, _COMMANDS.c.host_uuid, _COMMANDS.c.name, _COMMANDS.c.args)
            .join(_HOSTS, _HOSTS.c.uuid == _COMMANDS.c.host_uuid)
            .where(_HOSTS.c.hypervisor_type == "Simulator", _COMMANDS.c.state == "Pending")
            .order_by(_COMMANDS.c.create_date).limit(bindparam("limit")))
_REPORTED = update(_HOSTS).where(_HOSTS.c.uuid.in_(bindparam("hosts", expanding=True)),
                                 _HOSTS.c.status == "Connected").values(
    last_report_date=bindparam("now"))
_NOT_CONNECTED = select(_HOSTS.c.uuid).where(_HOSTS.c.uuid.in_(bindparam("hosts", expanding=True)),
                                             _HOSTS.c.status != "Connected")


def _driver(host: Host) -> SimulatorDriver:
    spec = json.loads(host.simulator_spec or "{}")
    driver = SimulatorDriver(
        cpu_num=host.cpu_num or 32, memory_bytes=host.total_memory_capacity or 2**37,
        hostname=host.name, latency=spec.get("latency_ms", 0) / 1000,
        failure_probability=spec.get("failure_probability", 0), seed=spec.get("seed"))
    for name in spec.get("fail_commands", []):
        driver.fail_command(name)
    return driver


def _phase(uuid: str, interval: int) -> int:
    return zlib.crc32(uuid.encode()) % interval


class SimulatedHosts:
    TICK = 1.0
    COMMANDS_PER_TICK = 1000
    COMMAND_BUDGET = 0.4  # seconds of each tick

    def __init__(self, db: Database) -> None:
        self._db = db
        self.hosts: set[str] = set()
        # A simulated hypervisor is built on a host's first command, not before: most of a
        # large fleet only reports.
        self.executors: dict[str, CommandExecutor] = {}
        self._stop = threading.Event()
        self._woken = threading.Event()
        # Commands announced (queued and committed) and not yet seen by a read of the pending
        # ones: a wake for commands an earlier read already ran reads nothing.
        self._announced: set[str] = set()
        self._announced_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="aerie-simulated-hosts",
                                        daemon=True)
        self._adopted_until: datetime | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        self.worst_lag = 0.0  # seconds a tick's reports landed after they were due
        self.reports_sent = 0

    def start(self) -> None:
        self._unsubscribe = events.subscribe(self._on_event, (commands.COMMAND_QUEUED,))
        self._thread.start()

    def _on_event(self, _name: str, payload: dict) -> None:
        with self._announced_lock:  # committed: the next read finds it
            self._announced.add(payload["commandUuid"])
        self.wake()

    def wake(self) -> None:
        """Commands wait: run them now rather than at the next tick."""
        self._woken.set()

    def stop(self) -> None:
        self._unsubscribe()
        self._stop.set()
        self._woken.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        started = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            due_at = started + tick * self.TICK
            if time.monotonic() < due_at:  # until the tick: commands, whenever they come
                if self._woken.wait(due_at - time.monotonic()) and not self._stop.is_set():
                    self._woken.clear()
                    if self._unseen_announced():
                        self._guarded(self.run_commands, "commands")
                continue
            self._guarded(functools.partial(self.tick, tick), f"tick {tick}")
            self.worst_lag = max(self.worst_lag, time.monotonic() - due_at)
            tick += 1

    def _unseen_announced(self) -> bool:
        with self._announced_lock:
            return bool(self._announced)

    def _seen_announced(self, seen: set[str]) -> None:
        with self._announced_lock:
            self._announced -= seen

    @staticmethod
    def _guarded(work, what: str) -> None:
        try:
            work()
        except Exception:  # a bad tick must not end the simulation
            log.exception("simulated hosts: %s failed", what)

    def run_commands(self) -> None:
        """Their commands, oldest first, for at most COMMAND_BUDGET seconds of a tick: the
        rest wait for the next tick, so the reports due in this one are not late. They run
        between two transactions, not inside one: a slow simulated command (``latencyMs``)
        must not hold the database from everyone else. A host is adopted by its first
        command (only simulator hosts' commands are read); the scan for new hosts, which
        reads every host added in the last ADOPTION_LOOKBACK, is left to the tick."""
        self._run_commands(adopt=False)

    def _run_commands(self, *, adopt: bool) -> None:
        with self._announced_lock:
            # Committed before their events: the read below finds every one still pending.
            announced = set(self._announced)
        with self._db.session(reads_only=True) as db:  # reads beside SQLite's writer
            if adopt:
                self._adopt_new_hosts(db)
            pending = self._pending(db)
        self._seen_announced(announced | {command["id"] for command in pending})
        budget_ends = time.monotonic() + self.COMMAND_BUDGET
        outcomes: list[tuple[str, str, dict]] = []
        for command in pending:
            if time.monotonic() > budget_ends:
                break
            outcomes.append((command["host_uuid"], command["name"],
                             self.executors[command["host_uuid"]].execute(
                                 {key: command[key] for key in ("id", "name", "args")})))
        if outcomes:
            with self._db.session() as db:
                self._record(db, outcomes)

    def _pending(self, db: Session) -> list[dict]:
        found = []
        for command in db.execute(_PENDING, {"limit": self.COMMANDS_PER_TICK}):
            self.hosts.add(command.host_uuid)
            if command.host_uuid not in self.executors:
                # Thousands of successes a minute inside the control plane: their outcomes
                # are in agent_commands, its log keeps the failures.
                self.executors[command.host_uuid] = CommandExecutor(
                    _driver(db.get(Host, command.host_uuid)), success_log_level=logging.DEBUG)
            found.append({"id": command.uuid, "name": command.name,
                          "args": json.loads(command.args), "host_uuid": command.host_uuid})
        return found

    def _record(self, db: Session, outcomes: list[tuple[str, str, dict]]) -> None:
        """The results, as an agent reports them; a host whose batch asked for its state
        (connect, host.facts, vm.sync) also reports its facts and VMs, as an agent's full
        sync does. The rest only count as a sign of life: their VMs' states are the
        operations' to set, and the periodic reports carry the host's."""
        # The executor's own results (hostagent.protocol's ok_result/error_result), not a
        # report off the wire: recorded as they are, without validating each one.
        commands.record_outcomes(db, [
            (host_uuid, outcome["id"], outcome["ok"], outcome.get("result"), outcome.get("error"))
            for host_uuid, _, outcome in outcomes])
        reporting = dict.fromkeys(host_uuid for host_uuid, _, _ in outcomes)
        full_sync = {host for host, name, _ in outcomes if name in SYNCING_COMMANDS}
        interval = get_value(db, tracker.PING_INTERVAL) if full_sync else None
        for host_uuid in full_sync:
            host = db.get(Host, host_uuid)
            executor = self.executors[host_uuid]
            self._sync_vms(db, host, executor)
            tracker.reported(db, host, executor.driver.facts(), interval)
        self._seen(db, [host for host in reporting if host not in full_sync], utcnow(), interval)

    def tick(self, tick: int) -> None:
        self._run_commands(adopt=True)
        with self._db.session() as db:
            interval = get_value(db, tracker.PING_INTERVAL)
            due = [uuid for uuid in self.hosts if _phase(uuid, interval) == tick % interval]
            self._report(db, due, utcnow(), interval)

    def _adopt_new_hosts(self, db: Session) -> None:
        """Simulator hosts added since the last tick get a driver of their own."""
        stmt = select(_HOSTS.c.uuid, _HOSTS.c.create_date).where(
            _HOSTS.c.hypervisor_type == "Simulator")
        if self._adopted_until is not None:
            # Look back a little: a host's create date is set before its transaction commits.
            stmt = stmt.where(_HOSTS.c.create_date >= self._adopted_until - ADOPTION_LOOKBACK)
        newest = self._adopted_until
        for host in db.execute(stmt):
            self.hosts.add(host.uuid)
            newest = max(newest or host.create_date, host.create_date)
        self._adopted_until = newest

    def _sync_vms(self, db: Session, host: Host, executor: CommandExecutor) -> None:
        vms = executor.driver.list_vms()
        if vms or host.stranger_vm_uuids:
            sync_vms(db, host, [ReportedVm.model_validate(vm) for vm in vms])

    def _report(self, db: Session, due: list[str], now: datetime, interval: int) -> None:
        self._seen(db, due, now, interval)
        self.reports_sent += len(due)

    @staticmethod
    def _seen(db: Session, hosts: list[str], now: datetime, interval: int | None) -> None:
        """The hosts reported, with nothing to say but that they are there."""
        for start in range(0, len(hosts), CHUNK):
            chunk = hosts[start:start + CHUNK]
            # Connected hosts only, which is all of them but for a host (re)connecting:
            # when every host matched, there is none to look for (rowcount counts matched
            # rows on SQLite, and on MySQL, where SQLAlchemy sets CLIENT_FOUND_ROWS).
            if db.execute(_REPORTED, {"hosts": chunk, "now": now}).rowcount == len(chunk):
                continue
            for host_uuid in db.scalars(_NOT_CONNECTED, {"hosts": chunk}):
                tracker.reported(db, db.get(Host, host_uuid), None, interval)
