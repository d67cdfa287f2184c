"""The ASL compiler: a chain becomes a Step Functions state machine that does what the local
runner does.

The state's document is ``{"context": {...}}``. Per step:

- ``Run <step>``: a Task invoking the step Lambda (``action: run``); its output is the new
  context. An agent step invokes it with ``.waitForTaskToken``: the Lambda sends the command
  with the task token, the agent's report resumes the task, and the report lands at
  ``$.context.agentResults.<key>``; ``TimeoutSeconds`` bounds the wait.
- its Catch records ``{Error, Cause}`` at ``$.failure`` and goes to ``Failed at <step>``, a
  Pass that adds ``$.failure.step``, then to ``Roll back <step>``.
- ``Roll back <step>``: a Task (``action: rollback``) whose Catch records its error at
  ``$.failure.rollbackFailures.<key>``; success or not, it goes on to roll back the step
  before, and after the first step to ``Flow failed``, a Fail (error ``FlowFailed``) whose
  cause is ``$.failure`` as JSON: the failed step, its ``Error`` and ``Cause``, and the
  ``rollbackFailures``.

Every Task retries transient Lambda errors only. The step Lambda's ARN is the placeholder
``${FlowStepFunctionArn}`` (CloudFormation's DefinitionSubstitutions fills it).
"""
from __future__ import annotations

import json
from typing import Any

from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.steps import AGENT_RESULTS, result_key

FUNCTION_ARN_PLACEHOLDER = "${FlowStepFunctionArn}"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_INVOKE_WAITING = "arn:aws:states:::lambda:invoke.waitForTaskToken"
TRANSIENT_LAMBDA_ERRORS = ["Lambda.AWSLambdaException", "Lambda.SdkClientException",
                           "Lambda.ServiceException", "Lambda.TooManyRequestsException"]
RETRY_TRANSIENT = [{"BackoffRate": 2.0, "ErrorEquals": TRANSIENT_LAMBDA_ERRORS,
                    "IntervalSeconds": 1, "MaxAttempts": 3}]
FLOW_FAILED = "Flow failed"
FLOW_SUCCEEDED = "Flow succeeded"
FLOW_FAILED_ERROR = "FlowFailed"
ROLLBACK_FAILURES = "rollbackFailures"


def run_state(step_name: str) -> str:
    return f"Run {step_name}"


def failed_state(step_name: str) -> str:
    return f"Failed at {step_name}"


def rollback_state(step_name: str) -> str:
    return f"Roll back {step_name}"


def _invoke(chain_step: ChainStep, action: str, function_arn: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"action": action, "context.$": "$.context",
                               "step": chain_step.name}
    waits = action == "run" and chain_step.waits_for_agent
    if waits:
        payload["taskToken.$"] = "$$.Task.Token"
    return {"Type": "Task", "Resource": LAMBDA_INVOKE_WAITING if waits else LAMBDA_INVOKE,
            "Parameters": {"FunctionName": function_arn, "Payload": payload},
            "Retry": RETRY_TRANSIENT}


def _run_task(chain_step: ChainStep, next_state: str, function_arn: str) -> dict[str, Any]:
    task = _invoke(chain_step, "run", function_arn)
    if chain_step.waits_for_agent:
        task["ResultPath"] = f"$.context.{AGENT_RESULTS}.{result_key(chain_step.name)}"
        task["TimeoutSeconds"] = chain_step.agent_timeout_seconds
    else:
        task["ResultSelector"] = {"context.$": "$.Payload"}
        task["ResultPath"] = "$"
    task["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": failed_state(chain_step.name),
                      "ResultPath": "$.failure"}]
    task["Next"] = next_state
    return task


def _rollback_task(chain_step: ChainStep, next_state: str, function_arn: str) -> dict[str, Any]:
    task = _invoke(chain_step, "rollback", function_arn)
    task["ResultPath"] = None
    task["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": next_state,
                      "ResultPath": f"$.failure.{ROLLBACK_FAILURES}.{result_key(chain_step.name)}"}]
    task["Next"] = next_state
    return task


def compile_chain(chain: Chain, function_arn: str = FUNCTION_ARN_PLACEHOLDER) -> dict[str, Any]:
    states: dict[str, Any] = {}
    steps = chain.steps
    for position, chain_step in enumerate(steps):
        name = chain_step.name
        after = run_state(steps[position + 1].name) if position + 1 < len(steps) \
            else FLOW_SUCCEEDED
        before = rollback_state(steps[position - 1].name) if position > 0 else FLOW_FAILED
        states[run_state(name)] = _run_task(chain_step, after, function_arn)
        states[failed_state(name)] = {"Type": "Pass", "Result": name,
                                      "ResultPath": "$.failure.step",
                                      "Next": rollback_state(name)}
        states[rollback_state(name)] = _rollback_task(chain_step, before, function_arn)
    # Error names of the States. family (States.Timeout) cannot be a Fail's error: the
    # failed step's error is in the cause, with the step and the rollbacks that failed.
    states[FLOW_FAILED] = {"Type": "Fail", "Error": FLOW_FAILED_ERROR,
                           "CausePath": "States.JsonToString($.failure)"}
    states[FLOW_SUCCEEDED] = {"Type": "Succeed"}
    return {"Comment": f"Aerie flow {chain.name}: generated from statemachines/chains by "
                       f"`make asl`; do not edit",
            "StartAt": run_state(steps[0].name), "States": states}


def render(definition: dict[str, Any]) -> str:
    """Stable text: the drift test compares it byte for byte."""
    return json.dumps(definition, indent=2, sort_keys=True) + "\n"


def with_function_arn(asl_text: str, function_arn: str) -> str:
    """A checked-in definition with the step Lambda's ARN filled in."""
    return asl_text.replace(FUNCTION_ARN_PLACEHOLDER, function_arn)
