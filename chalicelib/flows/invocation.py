"""Running one step action: the body of the step Lambda, and what the local runner calls.

Both runtimes go through these functions, so a step sees the same thing in both: a JSON
copy of the context (its changes count only if it succeeds) and :class:`StepFailed` for
anything it raises.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from chalicelib.errors import AerieError
from chalicelib.flows import steps as step_registry
from chalicelib.flows.steps import AnyStep, FlowContext, StepEnv, StepRegistry, is_agent_step

log = logging.getLogger(__name__)
T = TypeVar("T")


class StepFailed(Exception):
    """A step's run or rollback raised. On AWS the class name is the Lambda's ``errorType``,
    which the state machine's Catch records."""

    # Its name is outcome.STEP_FAILED: the error both runners report.


def describe(exc: BaseException) -> str:
    if isinstance(exc, AerieError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def json_copy(ctx: FlowContext) -> FlowContext:
    """The context as the next state will see it (Step Functions passes JSON only)."""
    return json.loads(json.dumps(ctx))


# MySQL's answers to two transactions that each wait for the other, or waited too long: the
# database undid the whole transaction, so the step did nothing and is simply run again.
RETRIED_DATABASE_ERRORS = (1213, 1205)  # ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
DATABASE_RETRIES = 4


def _lost_a_lock_race(exc: Exception) -> bool:
    original = getattr(exc, "orig", None)
    return isinstance(exc, OperationalError) and bool(original and original.args) and \
        original.args[0] in RETRIED_DATABASE_ERRORS


def with_retries(name: str, work: Callable[[], T]) -> T:
    """``work()``, done again (up to DATABASE_RETRIES times in all) while it loses a MySQL
    lock race: the database undid its whole transaction, so each attempt starts afresh."""
    for attempt in range(DATABASE_RETRIES):
        try:
            return work()
        except OperationalError as exc:
            if not _lost_a_lock_race(exc) or attempt == DATABASE_RETRIES - 1:
                raise
            log.info("step %s lost a lock race (%s); running it again", name, exc.orig)
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def step_once(implementation: AnyStep, ctx: FlowContext, env: StepEnv) -> FlowContext:
    """Run a step once; returns the new context and lets whatever it raised through."""
    if is_agent_step(implementation):
        raise StepFailed(f"step {implementation.name!r} waits for an agent: the chain must "
                         f"declare it with waitsForAgent")
    work = json_copy(ctx)
    implementation.run(work, env)
    return json_copy(work)


def send_once(implementation: AnyStep, ctx: FlowContext, env: StepEnv,
              task_token: str | None = None) -> str:
    """Build and send an agent step's command; returns the command's uuid and lets whatever
    it raised through."""
    if not is_agent_step(implementation):
        raise StepFailed(f"step {implementation.name!r} does not wait for an agent, but the "
                         f"chain declares it with waitsForAgent")
    return env.agents.send(implementation.command(json_copy(ctx), env), task_token)


def failure_message(exc: Exception) -> str:
    """What a step's failure says, as its StepFailed carries it."""
    return str(exc) if isinstance(exc, StepFailed) else describe(exc)


def run_step(implementation: AnyStep, ctx: FlowContext, env: StepEnv) -> FlowContext:
    """Run a step; returns the new context."""
    try:
        return with_retries(implementation.name, lambda: step_once(implementation, ctx, env))
    except Exception as exc:
        log.warning("step %s failed", implementation.name, exc_info=True)
        raise StepFailed(failure_message(exc)) from exc


def send_step_command(implementation: AnyStep, ctx: FlowContext, env: StepEnv,
                      task_token: str | None = None) -> str:
    """Send an agent step's command; returns the command's uuid."""
    try:
        return send_once(implementation, ctx, env, task_token)
    except Exception as exc:
        log.warning("step %s could not send its command", implementation.name, exc_info=True)
        raise StepFailed(failure_message(exc)) from exc


def roll_back_step(implementation: AnyStep, ctx: FlowContext, env: StepEnv) -> None:
    try:
        with_retries(implementation.name, lambda: implementation.rollback(json_copy(ctx), env))
    except Exception as exc:
        log.warning("rollback of step %s failed", implementation.name, exc_info=True)
        raise StepFailed(describe(exc)) from exc


def handle_step_event(event: dict[str, Any], env: StepEnv,
                      registry: StepRegistry | None = None) -> dict[str, Any]:
    """The step Lambda: ``{"step", "action": "run"|"rollback", "context", "taskToken"?}``.

    ``run`` returns the new context; an agent step's ``run`` (with a task token) sends the
    command and returns its uuid, and the agent's report completes the waiting task.
    """
    implementation = (registry or step_registry.STEPS).get(event["step"])
    ctx = event.get("context") or {}
    if event["action"] == "rollback":
        roll_back_step(implementation, ctx, env)
        return {}
    if event["action"] != "run":
        raise ValueError(f"unknown step action {event['action']!r}")
    if "taskToken" in event:
        return {"commandUuid": send_step_command(implementation, ctx, env, event["taskToken"])}
    return run_step(implementation, ctx, env)
