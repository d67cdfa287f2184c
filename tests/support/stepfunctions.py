"""Step Functions under moto with the real step Lambda: moto executes the state machines
(``mock_aws(config=EXECUTING)``), and its Lambda calls run ``app.flow_step`` in-process."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.responses import EmptyResult
from moto.stepfunctions.responses import StepFunctionResponse

from chalicelib.flows.asl import with_function_arn
from chalicelib.flows.compile import ASL_SUFFIX

REGION, ACCOUNT = "us-east-1", "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:aerie-flow_step"
MACHINE_NAME_PREFIX = "aerie-flow-"
MACHINE_PREFIX = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{MACHINE_NAME_PREFIX}"
FLOWS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/aerie-flows"
# moto runs state machines only when asked, and Lambda code only in Docker unless told not to.
EXECUTING = {"stepfunctions": {"execute_state_machine": True},
             "lambda": {"use_docker": False}}


def bridge_lambda_to_app(app_module):
    """moto's Lambda without Docker echoes its input; this runs the real step Lambda."""

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        try:
            result = app_module.flow_step(json.loads(body), None)
        except Exception as exc:  # noqa: BLE001 - what Lambda reports for any exception
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__,
                               "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    return invoke


def send_task_failure_with_cause(self):
    """moto 5.2.5's SendTaskFailure drops ``cause`` (its backend takes it, the response
    handler does not pass it); AWS keeps it, so the tests pass it on."""
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"),
        cause=self._get_param("cause"))
    return EmptyResult()


def run_step_lambda_in_process(mp: pytest.MonkeyPatch, app_module) -> None:
    """Inside ``mock_aws(config=EXECUTING)``: state machines' Lambda tasks run the real
    ``flow_step`` handler, and task failures keep their cause."""
    mp.setattr(LambdaSimpleBackend, "invoke", bridge_lambda_to_app(app_module))
    mp.setattr(StepFunctionResponse, "send_task_failure", send_task_failure_with_cause)


def create_state_machines(stepfunctions: Any, definitions: dict[str, str],
                          function_arn: str = FUNCTION_ARN) -> list[str]:
    """One state machine per chain (``aerie-flow-<chain>``), the step Lambda filled in."""
    return [stepfunctions.create_state_machine(
        name=f"{MACHINE_NAME_PREFIX}{chain}", roleArn=FLOWS_ROLE,
        definition=with_function_arn(text, function_arn))["stateMachineArn"]
        for chain, text in definitions.items()]


def checked_in_definitions(directory: Path) -> dict[str, str]:
    """Chain name -> the compiled ASL checked in under ``statemachines/``."""
    return {path.name[:-len(ASL_SUFFIX)]: path.read_text()
            for path in sorted(directory.glob(f"*{ASL_SUFFIX}"))}
