"""`chalice package` merged with infra/ turns the app into a deployable template (no AWS
credentials): the API, the job consumer, the operations queue, the agents' role, and a
state machine per flow chain (generated into infra/ by `make asl`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_chalice_package_emits_the_api_and_the_job_consumer(tmp_path):
    template = _package(tmp_path)
    resources = template["Resources"]
    functions = {name: r for name, r in resources.items()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert "APIHandler" in functions and "RunOperations" in functions
    assert "RestAPI" in resources
    events = functions["RunOperations"]["Properties"]["Events"]
    assert any(e["Type"] == "SQS" for e in events.values())
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "/v1/zones/{uuid}" in paths and "/v1/api-jobs/{uuid}" in paths

    # Every function knows the operations queue and the agent role, which infra/ creates.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["AERIE_JOBS_QUEUE_URL"] == {"Ref": "OperationsQueue"}
    assert resources["OperationsQueue"]["Properties"]["FifoQueue"] is True
    assert resources["OperationsQueue"]["Properties"]["VisibilityTimeout"] > \
        functions["RunOperations"]["Properties"]["Timeout"]
    assert variables["AERIE_AGENT_ROLE_ARN"] == {"Fn::GetAtt": ["AgentQueueRole", "Arn"]}


def test_the_agent_role_allows_what_issued_credentials_need_and_only_on_host_queues():
    from chalicelib.agents.queue_access import AGENT_QUEUE_ACTIONS

    role = json.loads((ROOT / "infra" / "aerie.json").read_text())["Resources"][
        "AgentQueueRole"]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    # Issued credentials are this role's permissions ∩ the session policy: the role must
    # allow every action the session policy grants, on host queues only.
    assert sorted(statement["Action"]) == sorted(AGENT_QUEUE_ACTIONS)
    assert statement["Resource"]["Fn::Sub"].endswith(":aerie-host-*")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": {"Fn::GetAtt": ["DefaultRole", "Arn"]}}


def _package(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    chalice = Path(sys.executable).with_name("chalice")
    result = subprocess.run([str(chalice), "package", "--merge-template", "infra/aerie.json",
                             str(tmp_path / "out")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "out" / "sam.json").read_text())


def _statements(policy: dict) -> list[dict]:
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_every_chain_is_a_state_machine_whose_tasks_run_the_step_lambda(tmp_path):
    from chalicelib.flows.asl import FUNCTION_ARN_PLACEHOLDER, LAMBDA_INVOKE
    from chalicelib.flows.cloudformation import STATE_MACHINE_NAME_PREFIX

    template = _package(tmp_path)
    resources = template["Resources"]
    step = resources["FlowStep"]
    assert step["Type"] == "AWS::Serverless::Function"
    assert step["Properties"]["Handler"] == "app.flow_step"
    step_arn = {"Fn::GetAtt": ["FlowStep", "Arn"]}
    machines = {r["Properties"]["StateMachineName"]: (name, r) for name, r in resources.items()
                if r["Type"] == "AWS::StepFunctions::StateMachine"}
    chains = sorted(p.name[:-len(".asl.json")] for p in (ROOT / "statemachines").glob(
        "*.asl.json"))
    assert chains and sorted(machines) == [f"{STATE_MACHINE_NAME_PREFIX}{c}" for c in chains]

    fake_arn = "arn:aws:lambda:us-east-1:123456789012:function:aerie-dev-FlowStep"
    for chain in chains:
        logical_name, machine = machines[f"{STATE_MACHINE_NAME_PREFIX}{chain}"]
        properties = machine["Properties"]
        assert properties["DefinitionString"] == \
            (ROOT / "statemachines" / f"{chain}.asl.json").read_text()
        substitutions = properties["DefinitionSubstitutions"]
        assert substitutions == {FUNCTION_ARN_PLACEHOLDER[2:-1]: step_arn}
        # What CloudFormation makes of it: every ${…} filled, valid JSON, every Task on the
        # step Lambda.
        definition = properties["DefinitionString"]
        for key in substitutions:
            definition = definition.replace("${" + key + "}", fake_arn)
        assert "${" not in definition
        states = json.loads(definition)["States"]
        tasks = [s for s in states.values() if s["Type"] == "Task"]
        assert tasks, chain
        for task in tasks:
            assert task["Resource"].startswith(LAMBDA_INVOKE)
            assert task["Parameters"]["FunctionName"] == fake_arn
        assert properties["RoleArn"] == {"Fn::GetAtt": ["FlowsRole", "Arn"]}

    # The state machines may invoke the step Lambda, and nothing else.
    role = resources["FlowsRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"}
    (invoke,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert _actions(invoke) == {"lambda:InvokeFunction"}
    assert step_arn in invoke["Resource"]

    # The control plane starts and watches their executions and resumes their agent waits.
    flows_policy = resources["ControlPlaneFlowsPolicy"]
    assert flows_policy["Properties"]["Roles"] == [{"Ref": "DefaultRole"}]
    granted: dict[str, list] = {}
    for statement in _statements(flows_policy):
        resource = statement["Resource"]
        for action in _actions(statement):
            granted[action] = resource if isinstance(resource, list) else [resource]
    every_machine = sorted(({"Ref": name} for name, _ in machines.values()), key=str)
    for action in ("states:StartExecution", "states:SendTaskSuccess",
                   "states:SendTaskFailure"):
        assert sorted(granted[action], key=str) == every_machine, action
    for action in ("states:DescribeExecution", "states:GetExecutionHistory"):
        (executions,) = granted[action]
        assert executions["Fn::Sub"].endswith(f":execution:{STATE_MACHINE_NAME_PREFIX}*:*")

    # Every function finds a chain's state machine at AERIE_FLOW_STATE_MACHINE_PREFIX + chain.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["AERIE_FLOW_STATE_MACHINE_PREFIX"]["Fn::Sub"].endswith(
        f":stateMachine:{STATE_MACHINE_NAME_PREFIX}")
    # A consumer that gives its turn up hands its message back (ChangeMessageVisibility).
    (operations,) = [s for s in _statements(resources["ControlPlaneQueuesPolicy"])
                     if s["Resource"] == {"Fn::GetAtt": ["OperationsQueue", "Arn"]}]
    assert "sqs:ChangeMessageVisibility" in _actions(operations)


def test_infra_follows_the_chains_and_is_stale_when_it_does_not(tmp_path):
    from chalicelib.flows.compile import infra_is_stale, main

    assert not infra_is_stale(ROOT / "infra" / "aerie.json", ROOT / "statemachines"), \
        "infra/aerie.json does not match the chains: run `make asl`"
    # A chain added (or changed) without regenerating infra/ is caught.
    stale = tmp_path / "statemachines"
    (stale / "chains").mkdir(parents=True)
    for path in (ROOT / "statemachines" / "chains").glob("*.json"):
        (stale / "chains" / path.name).write_text(path.read_text())
    (stale / "chains" / "noop-vm.json").write_text(json.dumps(
        {"name": "noop-vm", "steps": ["vm.release-host-capacity"]}))
    infra = tmp_path / "aerie.json"
    infra.write_text((ROOT / "infra" / "aerie.json").read_text())
    assert infra_is_stale(infra, stale)
    assert main(["--write", str(stale), "--infra", str(infra)]) == 0
    assert not infra_is_stale(infra, stale)
    generated = json.loads(infra.read_text())["Resources"]
    assert generated["NoopVmStateMachine"]["Properties"]["StateMachineName"] == \
        "aerie-flow-noop-vm"
    # What was written by hand is left as it was.
    hand_written = json.loads((ROOT / "infra" / "aerie.json").read_text())["Resources"]
    assert generated["OperationsQueue"] == hand_written["OperationsQueue"]
    assert main(["--check", str(stale), "--infra", str(infra)]) == 0
