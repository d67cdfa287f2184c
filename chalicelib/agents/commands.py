"""Commands for a host's agent: queued here, fetched by the agent, results recorded."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.agents.protocol import CommandResult
from chalicelib.db.base import new_uuid, utcnow
from chalicelib.db.models import AgentCommand

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
_UNFINISHED = select(AgentCommand).where(
    AgentCommand.uuid.in_(bindparam("ids", expanding=True)),
    AgentCommand.host_uuid == bindparam("host"), AgentCommand.state.not_in(FINISHED))


def record(db: Session, host_uuid: str, results: list[CommandResult]) -> list[AgentCommand]:
    """The results of the host's commands; the commands they finished (a command of another
    host, or a repeated answer, is ignored)."""
    by_id = {outcome.id: outcome for outcome in results}
    finished = list(db.scalars(_UNFINISHED, {"ids": list(by_id), "host": host_uuid}))
    now = utcnow()
    for command in finished:
        outcome = by_id[command.uuid]
        command.state = "Succeeded" if outcome.ok else "Failed"
        command.result = json.dumps(outcome.result) if outcome.result is not None else None
        command.error = outcome.error
        command.finished_date = now
        events.publish_after_commit(db, COMMAND_FINISHED, {
            "commandUuid": command.uuid, "hostUuid": host_uuid, "name": command.name,
            "state": command.state, "ok": outcome.ok, "result": outcome.result,
            "error": outcome.error})
    return finished


def outcome(db: Session, command_uuid: str) -> AgentCommand:
    return db.get(AgentCommand, command_uuid)
