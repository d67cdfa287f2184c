"""`chalice package` merged with infra/ turns the app into a deployable template (no AWS
credentials): the API, the job consumer, the operations queue and the agents' role."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_chalice_package_emits_the_api_and_the_job_consumer(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    chalice = Path(sys.executable).with_name("chalice")
    result = subprocess.run([str(chalice), "package", "--merge-template", "infra/aerie.json",
                             str(tmp_path / "out")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "out" / "sam.json").read_text())
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
