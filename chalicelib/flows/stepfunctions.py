"""The serverless runtime's flow runner: one Step Functions execution per flow, named by the
job's uuid (a redelivered job finds its execution instead of starting another), and its
end mapped to the same :class:`FlowOutcome` the local runner gives."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.flows.asl import ROLLBACK_FAILURES, rollback_state, run_state
from chalicelib.flows.outcome import (
    AGENT_TIMED_OUT,
    AGENT_TIMEOUT_MESSAGE,
    FlowFailure,
    FlowOutcome,
    FlowProgress,
    ProgressSink,
    RollbackRecord,
    final_progress,
    ignore_progress,
)
from chalicelib.flows.steps import FlowContext, result_key

RUN_PREFIX, ROLLBACK_PREFIX = run_state(""), rollback_state("")


def error_message(error: str, cause: str | None) -> str:
    """The message of a Catch's ``Cause``: a Lambda's ``errorMessage``, an agent's error."""
    if error == AGENT_TIMED_OUT:
        return AGENT_TIMEOUT_MESSAGE
    try:
        parsed = json.loads(cause or "")
    except ValueError:
        return cause or ""
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return cause or ""


class StepFunctionsFlowRunner:
    def __init__(self, client: Any, state_machine_arn_prefix: str,
                 poll_seconds: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``state_machine_arn_prefix`` + chain name is the chain's state machine ARN, e.g.
        ``arn:aws:states:eu-west-1:123456789012:stateMachine:aerie-flow-``."""
        self._sfn = client
        self._prefix = state_machine_arn_prefix
        self._poll = poll_seconds
        self._sleep = sleep
        self._clock = clock

    def state_machine_arn(self, chain: str) -> str:
        return f"{self._prefix}{chain}"

    def execution_arn(self, chain: str, execution_name: str) -> str:
        return f"{self.state_machine_arn(chain).replace(':stateMachine:', ':execution:', 1)}" \
               f":{execution_name}"

    def start(self, chain: str, execution_name: str, context: FlowContext) -> str:
        try:
            return self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn(chain), name=execution_name,
                input=json.dumps({"context": context}))["executionArn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            return self.execution_arn(chain, execution_name)  # a redelivery: wait for it

    def run(self, chain: str, execution_name: str, context: FlowContext,
            progress: ProgressSink = ignore_progress,
            deadline: float | None = None) -> FlowOutcome | None:
        """Start (or find) the execution and wait for its end; None if ``deadline`` (on
        ``clock``) came first (the caller fails on purpose, so its message is redelivered
        and the next delivery waits again)."""
        execution_arn = self.start(chain, execution_name, context)
        return self.wait(chain, execution_arn, progress, deadline)

    def wait(self, chain: str, execution_arn: str, progress: ProgressSink = ignore_progress,
             deadline: float | None = None) -> FlowOutcome | None:
        shown: tuple[str, str | None] | None = None
        while True:
            description = self._sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                entered = self._entered_states(execution_arn)
                outcome = self.outcome(chain, description, entered)
                progress(final_progress(outcome))
                return outcome
            if progress is not ignore_progress:  # the history says where it is
                view = self._running_progress(chain, self._entered_states(execution_arn))
                if (view.state, view.current_step) != shown:
                    shown = (view.state, view.current_step)
                    progress(view)
            if deadline is not None and self._clock() >= deadline:
                return None
            self._sleep(self._poll)

    def _entered_states(self, execution_arn: str) -> list[str]:
        entered: list[str] = []
        paginator = self._sfn.get_paginator("get_execution_history")
        for page in paginator.paginate(executionArn=execution_arn):
            for event in page["events"]:
                details = event.get("stateEnteredEventDetails")
                if details:
                    entered.append(details["name"])
        return entered

    @staticmethod
    def _running_progress(chain: str, entered: list[str]) -> FlowProgress:
        view = FlowProgress(chain)
        for name in reversed(entered):
            if name.startswith(RUN_PREFIX):
                view.current_step = name[len(RUN_PREFIX):]
                break
            if name.startswith(ROLLBACK_PREFIX):
                view.state, view.current_step = "RollingBack", name[len(ROLLBACK_PREFIX):]
                break
        return view

    @staticmethod
    def outcome(chain: str, description: dict[str, Any], entered: list[str]) -> FlowOutcome:
        ran = tuple(name[len(RUN_PREFIX):] for name in entered if name.startswith(RUN_PREFIX))
        if description["status"] == "SUCCEEDED":
            return FlowOutcome(chain, ran, context=json.loads(description["output"])["context"])
        error = description.get("error") or description["status"]
        try:
            failure = json.loads(description.get("cause") or "")
        except ValueError:
            failure = None
        if not isinstance(failure, dict) or "step" not in failure:
            # Ended outside the flow's own states (aborted, timed out, a runtime error).
            return FlowOutcome(chain, ran, failure=FlowFailure(
                ran[-1] if ran else "", error, description.get("cause") or ""))
        rollback_failures = failure.get(ROLLBACK_FAILURES, {})
        rollbacks = []
        for name in entered:
            if not name.startswith(ROLLBACK_PREFIX):
                continue
            step_name = name[len(ROLLBACK_PREFIX):]
            failed = rollback_failures.get(result_key(step_name))
            if failed is None:
                rollbacks.append(RollbackRecord(step_name))
            else:
                rollbacks.append(RollbackRecord(step_name, failed.get("Error"),
                                                error_message(failed.get("Error", ""),
                                                              failed.get("Cause"))))
        return FlowOutcome(chain, ran, failure=FlowFailure(
            failure["step"], failure.get("Error", error),
            error_message(failure.get("Error", error), failure.get("Cause"))),
            rollbacks=tuple(rollbacks))
