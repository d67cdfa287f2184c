"""Commands for a host's agent: queued here, fetched by the agent, results recorded."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.agents.protocol import CommandResult
from chalicelib.db.base import new_uuid, utcnow
from chalicelib.db.models import AgentCommand, Host

BATCH = 50
COMMAND_QUEUED = "agent.command.queued"  # published once the command is committed
# Published once the result is committed, with the outcome: ok, result and error.
COMMAND_FINISHED = "agent.command.finished"


_INSERT = insert(AgentCommand.__table__)


def send(db: Session, host_uuid: str, name: str, args: dict[str, Any] | None = None) -> str:
    command_uuid = new_uuid()
    db.execute(_INSERT, {"uuid": command_uuid, "host_uuid": host_uuid, "name": name,
                         "args": json.dumps(args or {})})
    events.publish_after_commit(db, COMMAND_QUEUED, {
        "commandUuid": command_uuid, "hostUuid": host_uuid, "name": name})
    return command_uuid


def claim(db: Session, host_uuid: str) -> list[dict[str, Any]]:
    """The host's pending commands, oldest first, now marked Sent. A command Sent but never
    answered (the agent died) is sent again: agents drop ids they already ran."""
    commands = list(db.scalars(
        select(AgentCommand).where(AgentCommand.host_uuid == host_uuid,
                                   AgentCommand.state.in_(("Pending", "Sent")))
        .order_by(AgentCommand.create_date, AgentCommand.uuid).limit(BATCH)
    ))
    now = utcnow()
    for command in commands:
        command.state, command.sent_date = "Sent", now
    return [{"id": c.uuid, "name": c.name, "args": json.loads(c.args)} for c in commands]


FINISHED = ("Succeeded", "Failed")
CHUNK = 500  # commands per statement (well under SQLite's bound-parameter limit)
_COMMANDS = AgentCommand.__table__
_UNFINISHED_STATE = and_(_COMMANDS.c.state != FINISHED[0], _COMMANDS.c.state != FINISHED[1])
# Core, not the ORM: no autoflush, no ORM objects to load and flush one by one.
_UNFINISHED = select(_COMMANDS.c.uuid, _COMMANDS.c.host_uuid, _COMMANDS.c.name,
                     _COMMANDS.c.args).where(
    _COMMANDS.c.uuid.in_(bindparam("ids", expanding=True)), _UNFINISHED_STATE)
_HOSTS = Host.__table__
_LOCK_HOSTS = select(_HOSTS.c.uuid).where(
    _HOSTS.c.uuid.in_(bindparam("hosts", expanding=True))).order_by(_HOSTS.c.uuid).with_for_update()
# Run once per finished command (executemany); still unfinished: a concurrent report of the
# same command does not overwrite the outcome that finished it first.
_FINISH = update(_COMMANDS).where(_COMMANDS.c.uuid == bindparam("b_uuid"), _UNFINISHED_STATE)


@dataclass(frozen=True, slots=True)
class FinishedCommand:
    """A command a report finished, as its row now reads (result: JSON)."""

    uuid: str
    host_uuid: str
    name: str
    args: str  # JSON
    state: str
    result: str | None
    error: str | None


# (host uuid, command uuid, ok, result, error): one command's outcome as its host reported it.
Outcome = tuple[str, str, bool, dict[str, Any] | None, str | None]


def record(db: Session, host_uuid: str, results: Iterable[CommandResult]
           ) -> list[FinishedCommand]:
    """The results of the host's commands; the commands they finished (a command of another
    host, or a repeated answer, is ignored)."""
    return record_outcomes(db, [(host_uuid, r.id, r.ok, r.result, r.error) for r in results])


def record_outcomes(db: Session, outcomes: Iterable[Outcome]) -> list[FinishedCommand]:
    """:func:`record` for the outcomes of any number of hosts at once (already validated:
    the simulated hosts' own executors produce them): one SELECT and one UPDATE per CHUNK
    commands, and COMMAND_FINISHED for each command finished once the transaction commits."""
    by_key = {(host_uuid, command_uuid): (ok, result, error)
              for host_uuid, command_uuid, ok, result, error in outcomes}
    _lock_hosts(db, sorted({host_uuid for host_uuid, _ in by_key}))
    ids = list(dict.fromkeys(command_uuid for _, command_uuid in by_key))
    finished: list[FinishedCommand] = []
    now = utcnow()
    for start in range(0, len(ids), CHUNK):
        rows = db.execute(_UNFINISHED, {"ids": ids[start:start + CHUNK]}).all()
        updates = []
        for command_uuid, host_uuid, name, args in rows:
            reported = by_key.get((host_uuid, command_uuid))
            if reported is None:  # another host's command
                continue
            ok, result, error = reported
            command = FinishedCommand(
                command_uuid, host_uuid, name, args, "Succeeded" if ok else "Failed",
                json.dumps(result) if result is not None else None, error)
            finished.append(command)
            updates.append({"b_uuid": command_uuid, "state": command.state,
                            "result": command.result, "error": error, "finished_date": now})
            events.publish_after_commit(db, COMMAND_FINISHED, {
                "commandUuid": command_uuid, "hostUuid": host_uuid, "name": name,
                "state": command.state, "ok": ok, "result": result, "error": error})
        if updates:
            db.execute(_FINISH, updates)
    return finished


def _lock_hosts(db: Session, host_uuids: list[str]) -> None:
    """Take the reporting hosts' rows for writing, in one order, before anything else is
    written: a report notes itself on its host afterwards, and recording a result first would
    hold a shared lock on that row (MySQL checks the command's foreign key) and then want it
    exclusive, deadlocking with a flow reserving capacity on the host in between. SQLite
    has no row locks (one writer at a time): nothing to take there."""
    if host_uuids and db.get_bind().dialect.name != "sqlite":
        db.execute(_LOCK_HOSTS, {"hosts": host_uuids}).all()


def outcome(db: Session, command_uuid: str) -> AgentCommand:
    return db.get(AgentCommand, command_uuid)
