"""Host status from agent reports: Connecting → Connected on the first report; Disconnected
when reports stop for ``interval × maxFailure + timeout``; Connected again when they resume."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.compute.capacity import refresh_capacity
from chalicelib.db.base import utcnow
from chalicelib.db.models import Host
from chalicelib.globalconfig import ConfigDefinition, define, get_value

PING_INTERVAL = define(ConfigDefinition(
    "host", "ping.interval", int, 60,
    "Seconds between an agent's state reports (its ping).", min=1, max=3600,
))
PING_TIMEOUT = define(ConfigDefinition(
    "host", "ping.timeout", int, 5,
    "Seconds of grace a late report gets before it counts as missed.", min=0, max=600,
))
PING_MAX_FAILURE = define(ConfigDefinition(
    "host", "ping.maxFailure", int, 3,
    "Reports missed in a row before a host is Disconnected.", min=1, max=100,
))

FACT_COLUMNS = {"cpuNum": "cpu_num", "architecture": "architecture", "osVersion": "os_version",
                "kernel": "kernel_version", "libvirtVersion": "libvirt_version",
                "qemuVersion": "qemu_version"}


def set_status(host: Host, status: str) -> None:
    """Every host status change goes through here, so each is announced."""
    if host.status != status:
        previous, host.status = host.status, status
        events.publish("host.status.changed", {"hostUuid": host.uuid, "from": previous,
                                               "to": status})


def reported(db: Session, host: Host, facts: dict[str, Any] | None,
             interval: int | None = None) -> int:
    """The host just reported: it is Connected. Returns the report interval it should keep
    (``interval``, when the caller already read it for a batch of hosts)."""
    host.last_report_date = utcnow()
    if facts:
        for key, column in FACT_COLUMNS.items():
            if facts.get(key) is not None:
                setattr(host, column, facts[key])
        memory, cpus = facts.get("memoryBytes"), facts.get("cpuNum")
        refresh_capacity(db, host, cpus if isinstance(cpus, int) and cpus > 0 else None,
                         memory if isinstance(memory, int) and memory > 0 else None)
    set_status(host, "Connected")
    return interval if interval is not None else get_value(db, PING_INTERVAL)


def silence_limit(db: Session) -> timedelta:
    return timedelta(seconds=get_value(db, PING_INTERVAL) * get_value(db, PING_MAX_FAILURE)
                     + get_value(db, PING_TIMEOUT))


def track(db: Session, now: datetime | None = None) -> list[str]:
    """Disconnect the hosts whose reports stopped. Returns their uuids."""
    cutoff = (now or utcnow()) - silence_limit(db)
    silent = list(db.scalars(select(Host).where(
        Host.status.in_(("Connected", "Connecting")), Host.last_report_date < cutoff)))
    for host in silent:
        set_status(host, "Disconnected")
    return [host.uuid for host in silent]


def note_strangers(host: Host, uuids: list[str]) -> None:
    known = json.loads(host.stranger_vm_uuids or "[]")
    if sorted(uuids) != sorted(known):
        host.stranger_vm_uuids = json.dumps(sorted(uuids))
        if uuids:
            events.publish("host.strangers.found", {"hostUuid": host.uuid, "vmUuids": uuids})
