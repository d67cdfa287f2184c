"""AddKvmHost serverless, under moto: the job goes through the operations FIFO queue to the
consumer Lambda, which starts the connect-host state machine; its tasks run the real step
Lambda, whose deploy step reports the playbook's tasks on the job and whose wait ends when
the agent reports. The playbook run itself is scripted (tests/e2e/test_real_kvm_host.py runs
the real one, embedded)."""
from __future__ import annotations

import pytest

from chalicelib.agents.deploy import DeployFailed
from chalicelib.compute import host_steps, hosts
from tests.integration.test_connect_host_flow import ScriptedDeployment
from tests.integration.test_serverless_vms import aws, executions, serverless  # noqa: F401


@pytest.fixture
def deployment(serverless, monkeypatch):  # noqa: F811 - the fixture imported above
    scripted = ScriptedDeployment(serverless.api)
    monkeypatch.setattr(host_steps, "deploy_agent", scripted)
    monkeypatch.setattr(hosts, "playbook_digest", lambda: scripted.digest)
    return scripted


def add_kvm_host(serverless) -> dict:  # noqa: F811
    zone = serverless.do("POST", "/v1/zones", {"name": "z"})["uuid"]
    cluster = serverless.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
    return serverless.submit("POST", "/v1/hosts/kvm", {
        "clusterUuid": cluster, "name": "kvm-1", "managementIp": "10.0.0.5",
        "password": "ssh-secret"})


def test_a_kvm_host_is_deployed_and_connected_by_its_state_machine(
        serverless, deployment):  # noqa: F811
    job = add_kvm_host(serverless)
    assert job["state"] == "Succeeded", job
    assert job["result"]["status"] == "Connected"
    assert job["result"]["agentPlaybookDigest"] == deployment.digest
    assert job["progress"]["flow"] == "connect-host"
    assert executions("connect-host")[job["uuid"]] == "SUCCEEDED"
    assert len(deployment.calls) == 1


def test_a_failed_playbook_fails_the_execution_and_leaves_no_host(
        serverless, deployment):  # noqa: F811
    deployment.failure = DeployFailed(address="10.0.0.5", reason="unreachable",
                                      message="ssh: connect to host 10.0.0.5: No route")
    job = add_kvm_host(serverless)
    assert job["state"] == "Failed"
    assert job["error"]["details"]["failedStep"] == "host.deploy-agent"
    assert "No route" in job["error"]["message"]
    assert executions("connect-host")[job["uuid"]] == "FAILED"
    assert serverless.get("/v1/hosts").json()["inventories"] == []
