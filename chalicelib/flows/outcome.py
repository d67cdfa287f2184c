"""What a flow did, the same shape from both runners, and what a job shows of it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.errors import AerieError
from chalicelib.flows.steps import FlowContext

# Error names, the same in both runtimes (on AWS they are what a Catch sees).
STEP_FAILED = "StepFailed"  # the step's run or rollback raised
AGENT_COMMAND_FAILED = "AgentCommandFailed"  # the agent reported the command failed
AGENT_TIMED_OUT = "States.Timeout"  # no report within the step's timeout
AGENT_TIMEOUT_MESSAGE = "no report from the host agent within the step's timeout"


@dataclass(frozen=True)
class FlowFailure:
    step: str
    error: str
    message: str


@dataclass(frozen=True)
class RollbackRecord:
    step: str
    error: str | None = None  # set: this rollback failed (the next ones still ran)
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def to_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"step": self.step, "succeeded": self.succeeded}
        if self.error is not None:
            view["error"] = {"code": self.error, "message": self.message}
        return view


@dataclass(frozen=True)
class FlowOutcome:
    chain: str
    ran: tuple[str, ...]  # steps whose run started, in order (the failed one included)
    context: FlowContext | None = None  # the final context; only when the flow succeeded
    failure: FlowFailure | None = None
    rollbacks: tuple[RollbackRecord, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def end(self) -> FlowEnd:
        return FlowEnd.SUCCEEDED if self.succeeded else rollbacks_end(self.rollbacks)


class FlowEnd(StrEnum):
    """How a flow ended, as the operation that ran it settles its resource."""

    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"  # it failed and every rollback succeeded: nothing is left
    ROLLBACK_FAILED = "RollbackFailed"  # something may be left: the resource says so


def rollbacks_end(rollbacks: tuple[RollbackRecord, ...]) -> FlowEnd:
    return FlowEnd.ROLLED_BACK if all(r.succeeded for r in rollbacks) \
        else FlowEnd.ROLLBACK_FAILED


@dataclass
class FlowProgress:
    """What a job shows while its flow runs and after it failed."""

    chain: str
    state: str = "Running"  # Running | RollingBack | Succeeded | Failed
    current_step: str | None = None
    failure: FlowFailure | None = None
    rollbacks: list[RollbackRecord] = field(default_factory=list)

    def to_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"flow": self.chain, "state": self.state,
                                "currentStep": self.current_step}
        if self.failure is not None:
            view["failedStep"] = self.failure.step
            view["error"] = {"code": self.failure.error, "message": self.failure.message}
            view["rollbacks"] = [record.to_view() for record in self.rollbacks]
        return view


ProgressSink = Callable[[FlowProgress], None]


def final_progress(outcome: FlowOutcome) -> FlowProgress:
    """What a job shows of its flow once it ended."""
    return FlowProgress(outcome.chain, "Succeeded" if outcome.succeeded else "Failed",
                        failure=outcome.failure, rollbacks=list(outcome.rollbacks))


def ignore_progress(_progress: FlowProgress) -> None:
    return None


class FlowFailed(AerieError):
    """A flow failed and was rolled back; what a failed job's ``error`` carries."""

    code = "FlowFailed"

    @classmethod
    def from_outcome(cls, outcome: FlowOutcome) -> FlowFailed:
        failure = outcome.failure
        if failure is None:
            raise ValueError("the flow succeeded")
        progress = FlowProgress(outcome.chain, "Failed", failure=failure,
                                rollbacks=list(outcome.rollbacks))
        return cls(f"step {failure.step} failed: {failure.message or failure.error}",
                   details=progress.to_view())
