"""The embedded runtime's flow runner: runs a chain's steps in this process.

It does what the compiled state machine does on AWS, state for state: run each step on a
JSON copy of the context; on a failure, roll back the failed step and every step before it
in reverse order, recording (and going past) rollbacks that fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.flows import steps as step_registry
from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.invocation import (
    StepFailed,
    json_copy,
    roll_back_step,
    run_step,
    send_step_command,
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


@dataclass(frozen=True)
class AgentOutcome:
    """An agent's report on one command."""

    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


class AgentWaiter(Protocol):
    def wait(self, command_uuid: str, timeout_seconds: float) -> AgentOutcome | None:
        """The command's outcome once its agent reported it; None if none came in time."""


class _StepError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error, self.message = error, message


class LocalFlowRunner:
    def __init__(self, env: StepEnv, waiter: AgentWaiter,
                 registry: StepRegistry | None = None) -> None:
        self.env = env
        self.waiter = waiter
        self._registry = registry

    @property
    def registry(self) -> StepRegistry:
        return self._registry or step_registry.STEPS

    def run(self, chain: Chain, context: FlowContext,
            progress: ProgressSink = ignore_progress) -> FlowOutcome:
        ctx = json_copy(context)
        view = FlowProgress(chain.name)
        ran: list[str] = []
        for position, chain_step in enumerate(chain.steps):
            ran.append(chain_step.name)
            view.current_step = chain_step.name
            progress(view)
            try:
                ctx = self._run(chain_step, ctx)
            except _StepError as failed:
                view.failure = FlowFailure(chain_step.name, failed.error, failed.message)
                rollbacks = self._roll_back(chain.steps[:position + 1], ctx, view, progress)
                return FlowOutcome(chain.name, tuple(ran), failure=view.failure,
                                   rollbacks=rollbacks)
        view.state, view.current_step = "Succeeded", None
        progress(view)
        return FlowOutcome(chain.name, tuple(ran), context=ctx)

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

    def _run(self, chain_step: ChainStep, ctx: FlowContext) -> FlowContext:
        implementation = self._implementation(chain_step.name)
        try:
            if not chain_step.waits_for_agent:
                return run_step(implementation, ctx, self.env)
            command_uuid = send_step_command(implementation, ctx, self.env)
        except StepFailed as exc:
            raise _StepError(STEP_FAILED, str(exc)) from exc
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
