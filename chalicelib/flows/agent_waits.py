"""Agent steps on the control plane's side: sending their commands through the
``agent_commands`` table, and waiting for the reports (embedded: poll the table; AWS: the
report resumes the execution's waiting task)."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.agents import commands
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand
from chalicelib.flows.local import AgentOutcome
from chalicelib.flows.outcome import AGENT_COMMAND_FAILED
from chalicelib.flows.steps import AgentCommandRequest, StepEnv
from chalicelib.runtime.base import AgentChannel, Runtime

log = logging.getLogger(__name__)

# Where a waiting task's token is kept: with the command, in its args (the agent ignores
# arguments it does not know). A column of its own would keep it from the agent.
TASK_TOKEN_ARG = "flowTaskToken"
FINISHED = ("Succeeded", "Failed")
STALE_TOKEN_ERRORS = ("TaskDoesNotExist", "TaskTimedOut", "InvalidToken")


class DatabaseAgentDispatch:
    def __init__(self, db: Database, channel: AgentChannel | None = None) -> None:
        self._db = db
        self._channel = channel

    def send(self, request: AgentCommandRequest, task_token: str | None = None) -> str:
        args = dict(request.args)
        if task_token is not None:
            args[TASK_TOKEN_ARG] = task_token
        with self._db.session() as session:
            command_uuid = commands.send(session, request.host_uuid, request.name, args)
        if self._channel is not None:
            self._channel.deliver_pending()  # serverless agents read their SQS queue
        return command_uuid


def step_env(runtime: Runtime) -> StepEnv:
    """What steps get in this runtime: its database and its agents."""
    return StepEnv(session=runtime.db.session,
                   agents=DatabaseAgentDispatch(runtime.db, runtime.agents))


class ReportedCommand(Protocol):
    """A finished command as its row reads: an ``AgentCommand`` or what
    ``agents.commands.record`` returns."""

    args: str  # JSON
    state: str
    result: str | None  # JSON
    error: str | None


def command_outcome(command: ReportedCommand) -> AgentOutcome:
    return AgentOutcome(ok=command.state == "Succeeded",
                        result=json.loads(command.result) if command.result else None,
                        error=command.error)


def finished_outcome(db: Database, command_uuid: str) -> AgentOutcome | None:
    """The command's outcome if its agent reported it, in a transaction of its own."""
    with db.session() as session:
        command = session.get(AgentCommand, command_uuid)
        if command is not None and command.state in FINISHED:
            return command_outcome(command)
    return None


class PollingAgentWaiter:
    """Waits by reading the command's row in short transactions (none is held between)."""

    def __init__(self, db: Database, interval_seconds: float = 0.2,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._db = db
        self._interval = interval_seconds
        self._clock = clock
        self._sleep = sleep

    def wait(self, command_uuid: str, timeout_seconds: float) -> AgentOutcome | None:
        deadline = self._clock() + timeout_seconds
        while True:
            outcome = finished_outcome(self._db, command_uuid)
            if outcome is not None:
                return outcome
            if self._clock() >= deadline:
                return None
            self._sleep(self._interval)


def complete_agent_wait(stepfunctions: Any, task_token: str, outcome: AgentOutcome) -> bool:
    """Resume the task waiting on a command; False if it no longer waits (timed out, or its
    execution ended)."""
    try:
        if outcome.ok:
            stepfunctions.send_task_success(taskToken=task_token,
                                            output=json.dumps(outcome.result or {}))
        else:
            stepfunctions.send_task_failure(taskToken=task_token, error=AGENT_COMMAND_FAILED,
                                            cause=(outcome.error or "")[:32768])
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in STALE_TOKEN_ERRORS:
            raise
        log.info("a flow no longer waits for its agent command: %s", exc)
        return False
    return True


def resume_waiting_flows(stepfunctions: Any, finished: Iterable[ReportedCommand]) -> int:
    """Serverless: hand the outcome of each finished command a flow waits on to its waiting
    task (call it with what ``agents.commands.record`` returns, after the report's
    transaction committed). Returns how many flows were resumed."""
    resumed = 0
    for command in finished:
        token = json.loads(command.args).get(TASK_TOKEN_ARG)
        if token and complete_agent_wait(stepfunctions, token, command_outcome(command)):
            resumed += 1
    return resumed
