"""The flows' part of ``infra/aerie.json``, generated from the compiled ASL (``make asl``).

Per chain a ``AWS::StepFunctions::StateMachine`` named ``aerie-flow-<chain>`` whose
definition is the checked-in ASL text, the step Lambda's ARN filled in by
``DefinitionSubstitutions``; the role the state machines run as (it may invoke the step
Lambda and nothing else); the control plane's permissions on them (start and watch
executions, resume waiting tasks); and ``AERIE_FLOW_STATE_MACHINE_PREFIX`` for every
function. The rest of the template is written by hand and left as it is.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from chalicelib.flows.asl import FUNCTION_ARN_PLACEHOLDER

STATE_MACHINE = "AWS::StepFunctions::StateMachine"
STATE_MACHINE_NAME_PREFIX = "aerie-flow-"
FLOW_STEP_FUNCTION = "FlowStep"  # what `chalice package` names app.py's flow_step Lambda
FLOWS_ROLE = "FlowsRole"
FLOWS_POLICY = "ControlPlaneFlowsPolicy"
CONTROL_PLANE_ROLE = "DefaultRole"  # chalice package's role for the app's functions
PREFIX_VARIABLE = "AERIE_FLOW_STATE_MACHINE_PREFIX"
SUBSTITUTION = FUNCTION_ARN_PLACEHOLDER[2:-1]  # "${FlowStepFunctionArn}" -> its name
# What the control plane does with flows: start them, watch them, resume their agent waits.
EXECUTION_ACTIONS = ["states:DescribeExecution", "states:GetExecutionHistory"]
STATE_MACHINE_ACTIONS = ["states:StartExecution", "states:SendTaskSuccess",
                         "states:SendTaskFailure"]


def resource_name(chain: str) -> str:
    """``create-vm`` -> ``CreateVmStateMachine`` (CloudFormation ids are alphanumeric)."""
    return "".join(part.capitalize() for part in chain.split("-")) + "StateMachine"


def _arn(kind: str, name: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:"
                       f"{kind}:{name}"}


def state_machine(chain: str, asl_text: str) -> dict[str, Any]:
    return {"Type": STATE_MACHINE, "Properties": {
        "StateMachineName": f"{STATE_MACHINE_NAME_PREFIX}{chain}",
        "RoleArn": {"Fn::GetAtt": [FLOWS_ROLE, "Arn"]},
        "DefinitionString": asl_text,
        "DefinitionSubstitutions": {SUBSTITUTION: {"Fn::GetAtt": [FLOW_STEP_FUNCTION, "Arn"]}},
    }}


def flows_role() -> dict[str, Any]:
    step_lambda = {"Fn::GetAtt": [FLOW_STEP_FUNCTION, "Arn"]}
    return {"Type": "AWS::IAM::Role", "Properties": {
        "Description": "Run by Aerie's flow state machines: they invoke the step Lambda",
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole"}]},
        "Policies": [{"PolicyName": "InvokeFlowStep", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "lambda:InvokeFunction",
                "Resource": [step_lambda, {"Fn::Join": [":", [step_lambda, "*"]]}]}]}}],
    }}


def control_plane_policy(chains: list[str]) -> dict[str, Any]:
    machines = [{"Ref": resource_name(chain)} for chain in chains]  # Ref: the machine's ARN
    return {"Type": "AWS::IAM::Policy", "Properties": {
        "PolicyName": "AerieFlows",
        "Roles": [{"Ref": CONTROL_PLANE_ROLE}],
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": STATE_MACHINE_ACTIONS, "Resource": machines},
            {"Effect": "Allow", "Action": EXECUTION_ACTIONS,
             "Resource": _arn("execution", f"{STATE_MACHINE_NAME_PREFIX}*:*")},
        ]},
    }}


def with_flows(template: dict[str, Any], definitions: dict[str, str]) -> dict[str, Any]:
    """``template`` with its flow resources replaced by those of ``definitions`` (chain ->
    compiled ASL text); everything else as it was."""
    template = copy.deepcopy(template)
    chains = sorted(definitions)
    resources = {name: resource for name, resource in template.get("Resources", {}).items()
                 if resource.get("Type") != STATE_MACHINE
                 and name not in (FLOWS_ROLE, FLOWS_POLICY)}
    resources[FLOWS_ROLE] = flows_role()
    resources[FLOWS_POLICY] = control_plane_policy(chains)
    for chain in chains:
        resources[resource_name(chain)] = state_machine(chain, definitions[chain])
    variables = template.setdefault("Globals", {}).setdefault("Function", {}) \
        .setdefault("Environment", {}).setdefault("Variables", {})
    variables[PREFIX_VARIABLE] = _arn("stateMachine", STATE_MACHINE_NAME_PREFIX)
    return {**template, "Resources": resources}


def render(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2) + "\n"
