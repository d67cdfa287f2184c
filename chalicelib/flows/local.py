"""The embedded runtime's flow runner: runs a chain's steps in this process.

It does what the compiled state machine does on AWS, state for state: run each step on a
JSON copy of the context; on a failure, roll back the failed step and every step before it
in reverse order, recording (and going past) rollbacks that fail.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.flows import steps as step_registry
from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.invocation import (
    StepFailed,
    failure_message,
    json_copy,
    roll_back_step,
    send_once,
    step_once,
    with_retries,
)
from chalicelib.flows.outcome import (
    AGENT_COMMAND_FAILED,
    AGENT_TIMED_OUT,
    AGENT_TIMEOUT_MESSAGE,
    STEP_FAILED,
    FlowFailure,
    FlowOutcome,
    FlowProgress,
    ProgressSink,
    RollbackRecord,
    ignore_progress,
)
from chalicelib.flows.steps import (
    AGENT_RESULTS,
    FlowContext,
    StepEnv,
    StepRegistry,
    UnknownStep,
    result_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentOutcome:
    """An agent's report on one command."""

    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


class AgentWaiter(Protocol):
    def wait(self, command_uuid: str, timeout_seconds: float) -> AgentOutcome | None:
        """The command's outcome once its agent reported it; None if none came in time.
        WaitAbandoned if the process is stopping."""


class WaitAbandoned(Exception):
    """The process is stopping while a flow waits for an agent: the flow stops where it is,
    with neither an outcome nor rollbacks (its job stays Running, and the next start rolls
    it back as interrupted)."""


class _StepError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error, self.message = error, message


class _BatchFailed(Exception):
    """Step ``position`` failed; ``ctx`` is the context the steps before it made."""

    def __init__(self, position: int, failed: _StepError, ctx: FlowContext) -> None:
        super().__init__(failed.message)
        self.position, self.failed, self.ctx = position, failed, ctx


def _batch_end(steps: tuple[ChainStep, ...], start: int) -> int:
    """Where the batch of steps starting at ``start`` ends: after the database steps that
    follow one another, and after the agent step that comes next (its command is sent, not
    waited for, in the batch). A long-running step is a batch of its own."""
    if steps[start].long_running:
        return start + 1
    end = start
    while end < len(steps) and not steps[end].waits_for_agent:
        if steps[end].long_running:
            return end
        end += 1
    return min(end + 1, len(steps))


class LocalFlowRunner:
    """Runs a chain's steps in batches, each batch in one transaction (``transaction``:
    every ``env.session()`` opened inside it joins it): a step's work commits with the
    others' of its batch. When a step of a batch fails, the whole batch's work is undone
    with its transaction, and then the failed step and every step before it are rolled back
    as ever; rollbacks are idempotent and safe for a step whose work never committed, so
    that ends where the state machine's one transaction per step does."""

    def __init__(self, env: StepEnv, waiter: AgentWaiter,
                 registry: StepRegistry | None = None,
                 transaction: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        self.env = env
        self.waiter = waiter
        self._registry = registry
        self._transaction = transaction

    @property
    def registry(self) -> StepRegistry:
        return self._registry or step_registry.STEPS

    def run(self, chain: Chain, context: FlowContext,
            progress: ProgressSink = ignore_progress) -> FlowOutcome:
        ctx = json_copy(context)
        view = FlowProgress(chain.name)
        start = 0
        while start < len(chain.steps):
            end = _batch_end(chain.steps, start)
            try:
                ctx = self._run_batch(chain.steps, start, end, ctx, view, progress)
            except _BatchFailed as batch:
                failed_step = chain.steps[batch.position]
                view.failure = FlowFailure(failed_step.name, batch.failed.error,
                                           batch.failed.message)
                rollbacks = self._roll_back(chain.steps[:batch.position + 1], batch.ctx,
                                            view, progress)
                ran = tuple(s.name for s in chain.steps[:batch.position + 1])
                return FlowOutcome(chain.name, ran, failure=view.failure, rollbacks=rollbacks)
            start = end
        view.state, view.current_step = "Succeeded", None
        progress(view)
        return FlowOutcome(chain.name, tuple(s.name for s in chain.steps), context=ctx)

    def roll_back(self, chain: Chain, context: FlowContext, through_step: str,
                  progress: ProgressSink = ignore_progress) -> tuple[RollbackRecord, ...]:
        """Roll back ``through_step`` and every step before it, in reverse order: what a
        flow that stopped half way (the process died) needs. Rollbacks are idempotent, so
        doing this again, or after some of them already ran, is safe."""
        names = [s.name for s in chain.steps]
        view = FlowProgress(chain.name)
        view.failure = FlowFailure(through_step, "Interrupted", "the flow was interrupted")
        return self._roll_back(chain.steps[:names.index(through_step) + 1], context, view,
                               progress)

    def _implementation(self, name: str):
        try:
            return self.registry.get(name)
        except UnknownStep as exc:
            raise _StepError(UnknownStep.__name__, str(exc)) from exc

    def _run_batch(self, steps: tuple[ChainStep, ...], start: int, end: int,
                   ctx: FlowContext, view: FlowProgress, progress: ProgressSink) -> FlowContext:
        """Steps ``start`` to ``end`` (exclusive) in one transaction, then the wait for the
        last one's agent, if it is an agent step; the new context."""
        position, work = start, ctx

        # A long-running step opens its own short transactions: none is held around it.
        transaction = nullcontext if steps[start].long_running else self._transaction

        def attempt() -> str | None:
            nonlocal position, work
            work, command_uuid = ctx, None
            with transaction():
                for position in range(start, end):
                    view.current_step = steps[position].name
                    progress(view)
                    implementation = self._implementation(steps[position].name)
                    if steps[position].waits_for_agent:
                        command_uuid = send_once(implementation, work, self.env)
                    else:
                        work = step_once(implementation, work, self.env)
            return command_uuid

        try:
            command_uuid = with_retries(steps[start].name, attempt)
        except _StepError as failed:
            raise _BatchFailed(position, failed, work) from failed
        except Exception as exc:
            log.warning("step %s failed", steps[position].name, exc_info=True)
            raise _BatchFailed(position, _StepError(STEP_FAILED, failure_message(exc)),
                               work) from exc
        if command_uuid is None:
            return work
        try:
            return self._await(steps[end - 1], command_uuid, work)
        except _StepError as failed:
            raise _BatchFailed(end - 1, failed, work) from failed

    def _await(self, chain_step: ChainStep, command_uuid: str, ctx: FlowContext) -> FlowContext:
        # No transaction is open here: the wait can be long.
        outcome = self.waiter.wait(command_uuid, chain_step.agent_timeout_seconds)
        if outcome is None:
            raise _StepError(AGENT_TIMED_OUT, AGENT_TIMEOUT_MESSAGE)
        if not outcome.ok:
            raise _StepError(AGENT_COMMAND_FAILED, outcome.error or "")
        ctx = json_copy(ctx)
        ctx.setdefault(AGENT_RESULTS, {})[result_key(chain_step.name)] = outcome.result or {}
        return ctx

    def _roll_back(self, done: tuple[ChainStep, ...], ctx: FlowContext, view: FlowProgress,
                   progress: ProgressSink) -> tuple[RollbackRecord, ...]:
        view.state = "RollingBack"
        for chain_step in reversed(done):
            view.current_step = chain_step.name
            progress(view)
            try:
                roll_back_step(self._implementation(chain_step.name), ctx, self.env)
                view.rollbacks.append(RollbackRecord(chain_step.name))
            except StepFailed as exc:
                view.rollbacks.append(RollbackRecord(chain_step.name, STEP_FAILED, str(exc)))
            except _StepError as exc:
                view.rollbacks.append(RollbackRecord(chain_step.name, exc.error, exc.message))
        view.state, view.current_step = "Failed", None
        progress(view)
        return tuple(view.rollbacks)
