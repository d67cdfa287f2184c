"""Commands for a host's agent: queued here, fetched by the agent, results recorded."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.agents.protocol import CommandResult
from chalicelib.db.base import utcnow
from chalicelib.db.models import AgentCommand

BATCH = 50
COMMAND_QUEUED = "agent.command.queued"  # published once the command is committed
# Published once the result is committed, with the outcome: ok, result and error.
COMMAND_FINISHED = "agent.command.finished"


def send(db: Session, host_uuid: str, name: str, args: dict[str, Any] | None = None) -> str:
    command = AgentCommand(host_uuid=host_uuid, name=name, args=json.dumps(args or {}))
    db.add(command)
    db.flush()
    events.publish_after_commit(db, COMMAND_QUEUED, {
        "commandUuid": command.uuid, "hostUuid": host_uuid, "name": name})
    return command.uuid


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


def record(db: Session, host_uuid: str, results: list[CommandResult]) -> list[AgentCommand]:
    finished = []
    for outcome in results:
        command = db.get(AgentCommand, outcome.id)
        if command is None or command.host_uuid != host_uuid or \
                command.state in ("Succeeded", "Failed"):
            continue  # not this host's, or a repeated answer
        command.state = "Succeeded" if outcome.ok else "Failed"
        command.result = json.dumps(outcome.result) if outcome.result is not None else None
        command.error = outcome.error
        command.finished_date = utcnow()
        finished.append(command)
        events.publish_after_commit(db, COMMAND_FINISHED, {
            "commandUuid": command.uuid, "hostUuid": host_uuid, "name": command.name,
            "state": command.state, "ok": outcome.ok, "result": outcome.result,
            "error": outcome.error})
    return finished


def outcome(db: Session, command_uuid: str) -> AgentCommand:
    return db.get(AgentCommand, command_uuid)
