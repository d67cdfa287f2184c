"""AddKvmHost and ReconnectHost run the connect-host flow: deploy the agent, then wait until it
connects. The playbook run is scripted here (tests/e2e/test_real_kvm_host.py runs the real
one over ssh); everything around it — the job's live progress, the token the agent gets, a
failure leaving no host behind, redeploying only when the playbook changed — is real."""
from __future__ import annotations

import threading
import time

import pytest

from chalicelib.agents.deploy import DeployFailed, DeployProgress, DeployResult
from chalicelib.compute import host_steps, hosts
from tests.integration.test_host_agents import agent_call

TASKS = ("Install qemu and libvirt", "Install the agent", "Start the agent")


class ScriptedDeployment:
    """Stands in for ``deploy_agent``: reports each task, then either fails as told or plays
    the agent that the playbook would have started (fetches its commands, reports)."""

    def __init__(self, api, digest: str = "digest-1") -> None:
        self.api = api
        self.digest = digest
        self.calls: list[tuple] = []
        self.failure: DeployFailed | None = None
        self.agent_connects = True
        self.hold_after_first_task: threading.Event | None = None
        self.first_task_shown = threading.Event()

    def __call__(self, target, settings, *, var_dir, on_progress, timeout=600) -> DeployResult:
        self.calls.append((target, settings))
        for number, name in enumerate(TASKS, 1):
            on_progress(DeployProgress(number, len(TASKS), name))
            if number == 1 and self.hold_after_first_task is not None:
                self.first_task_shown.set()
                assert self.hold_after_first_task.wait(10)
        if self.failure is not None:
            raise self.failure
        if self.agent_connects:
            self._connect(settings.host_uuid, settings.token)
        return DeployResult(changed=3, ok=9, seconds=0.1, playbook_digest=self.digest)

    def _connect(self, host_uuid: str, token: str) -> None:
        commands = agent_call(self.api, "GET", host_uuid, token, "commands").json()["commands"]
        reply = agent_call(self.api, "POST", host_uuid, token, "reports", json={
            "results": [{"id": c["id"], "ok": True, "result": {}} for c in commands],
            "facts": {"cpuNum": 4, "memoryBytes": 8 * 2**30}, "vms": []})
        assert reply.status_code == 200, reply.text


@pytest.fixture
def cluster(api) -> str:
    zone = api.do("POST", "/v1/zones", {"name": "kvm"})["uuid"]
    return api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "kvm"})["uuid"]


@pytest.fixture
def deployment(api, monkeypatch) -> ScriptedDeployment:
    scripted = ScriptedDeployment(api)
    monkeypatch.setattr(host_steps, "deploy_agent", scripted)
    monkeypatch.setattr(hosts, "playbook_digest", lambda: scripted.digest)
    return scripted


def add_kvm_host(api, cluster: str, **extra) -> dict:
    return api.submit("POST", "/v1/hosts/kvm", {
        "clusterUuid": cluster, "name": "kvm-1", "managementIp": "10.20.0.2",
        "username": "deployer", "password": "ssh-secret", "sshPort": 2222, **extra})


def test_added_host_is_connected_when_the_job_ends_and_shows_each_task_meanwhile(
        api, cluster, deployment):
    deployment.hold_after_first_task = threading.Event()
    reply = api.request("POST", "/v1/hosts/kvm", json={
        "clusterUuid": cluster, "name": "kvm-1", "managementIp": "10.20.0.2",
        "username": "deployer", "password": "ssh-secret", "sshPort": 2222})
    job_uuid = reply.json()["jobUuid"]
    assert deployment.first_task_shown.wait(10)
    deadline = time.monotonic() + 5
    while True:  # progress is written in its own transaction, visible at once
        progress = api.get(f"/v1/api-jobs/{job_uuid}").json().get("progress") or {}
        if progress.get("detail") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    deployment.hold_after_first_task.set()
    assert progress["currentStep"] == "host.deploy-agent"
    assert progress["detail"] == {"task": 1, "tasks": 3, "taskName": TASKS[0]}

    job = api.wait_job(job_uuid)
    assert job["state"] == "Succeeded", job
    host = job["result"]
    assert host["status"] == "Connected" and host["agentPlaybookDigest"] == "digest-1"
    assert "agentToken" not in host and "ssh-secret" not in str(job)
    target, settings = deployment.calls[0]
    assert (target.address, target.port, target.username, target.password) == \
        ("10.20.0.2", 2222, "deployer", "ssh-secret")
    assert settings.host_uuid == host["uuid"]
    # The token handed to the playbook is the host's: it authenticates its agent, only it.
    assert agent_call(api, "GET", host["uuid"], settings.token, "commands").status_code == 200


def test_a_failed_playbook_fails_the_job_with_the_task_and_leaves_no_host(
        api, cluster, deployment):
    deployment.failure = DeployFailed(address="10.20.0.2", task="Install the agent",
                                      reason="task-failed", message="No package matching 'x'")
    job = add_kvm_host(api, cluster)
    assert job["state"] == "Failed"
    error = job["error"]
    assert error["details"]["failedStep"] == "host.deploy-agent"
    assert "Install the agent" in error["message"] and "No package matching" in error["message"]
    assert "10.20.0.2" in error["message"]
    assert api.get("/v1/hosts").json()["inventories"] == []
    _, settings = deployment.calls[0]
    assert agent_call(api, "GET", settings.host_uuid, settings.token,
                      "commands").status_code in (403, 404)


def test_an_agent_that_never_connects_fails_the_job_after_the_timeout(
        api, cluster, deployment):
    api.do("PUT", "/v1/global-configurations/host/connect.timeout", {"value": "5"})
    deployment.agent_connects = False
    started = time.monotonic()
    job = add_kvm_host(api, cluster)
    assert job["state"] == "Failed"
    assert 5 <= time.monotonic() - started < 15
    assert job["error"]["details"]["failedStep"] == "host.await-connection"
    assert "did not connect within 5 s" in job["error"]["message"]
    assert api.get("/v1/hosts").json()["inventories"] == []


def test_reconnect_deploys_again_only_when_the_playbook_changed(api, cluster, deployment):
    host = add_kvm_host(api, cluster)["result"]
    assert len(deployment.calls) == 1
    job = api.submit("PUT", f"/v1/hosts/{host['uuid']}/actions/reconnect")
    assert job["state"] == "Succeeded" and len(deployment.calls) == 1

    deployment.digest = "digest-2"
    job = api.submit("PUT", f"/v1/hosts/{host['uuid']}/actions/reconnect")
    assert job["state"] == "Succeeded", job
    assert len(deployment.calls) == 2
    assert job["result"]["status"] == "Connected"
    assert job["result"]["agentPlaybookDigest"] == "digest-2"
    # The new deployment got a new token; the old one no longer works.
    old, new = deployment.calls[0][1].token, deployment.calls[1][1].token
    assert old != new
    assert agent_call(api, "GET", host["uuid"], old, "commands").status_code == 403


def test_a_private_key_is_accepted_and_never_shown(api, cluster, deployment):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" \
          "-----END OPENSSH PRIVATE KEY-----\n"
    job = api.submit("POST", "/v1/hosts/kvm", {
        "clusterUuid": cluster, "name": "kvm-k", "managementIp": "10.20.0.3",
        "privateKey": key})
    assert job["state"] == "Succeeded", job
    assert deployment.calls[0][0].private_key == key
    assert "PRIVATE KEY" not in api.get(f"/v1/hosts/{job['result']['uuid']}").text
    assert "PRIVATE KEY" not in str(api.get(f"/v1/api-jobs/{job['uuid']}").json())


def test_a_key_that_is_not_one_is_refused_at_once(api, cluster):
    reply = api.request("POST", "/v1/hosts/kvm", json={
        "clusterUuid": cluster, "name": "kvm-x", "managementIp": "10.20.0.4",
        "privateKey": "hunter2"})
    assert reply.status_code == 400
    assert api.get("/v1/hosts").json()["inventories"] == []


def test_a_management_ip_already_in_use_is_refused_at_once(api, cluster, deployment):
    add_kvm_host(api, cluster)
    reply = api.request("POST", "/v1/hosts/kvm", json={
        "clusterUuid": cluster, "name": "kvm-2", "managementIp": "10.20.0.2",
        "password": "x"})
    assert reply.status_code == 409
    assert reply.json()["error"]["details"]["field"] == "managementIp"
    assert len(deployment.calls) == 1


def test_where_ansible_is_missing_the_job_says_so_and_leaves_no_host(
        api, cluster, monkeypatch):
    def no_ansible(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'ansible_runner'")

    monkeypatch.setattr(host_steps, "deploy_agent", no_ansible)
    job = add_kvm_host(api, cluster)
    assert job["state"] == "Failed"
    assert job["error"]["details"]["error"]["message"].startswith("AgentDeployUnavailable")
    assert "deployAgent=false" in job["error"]["message"]
    assert api.get("/v1/hosts").json()["inventories"] == []
