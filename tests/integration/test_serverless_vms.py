"""The VM lifecycle serverless, under moto: the real app behind WSGI puts each job on the
operations FIFO queue; the consumer Lambda (``run_operations``) starts the chain's Step
Functions execution and waits for it; moto runs the checked-in ASL, whose tasks run the real
step Lambda (``flow_step``); agent steps put their command, with the task token, on the
host's SQS queue; the host's agent (``hostagent``, simulator driver, SQS transport with the
credentials the control plane issued it) runs it and reports through the API, and the report
resumes the waiting task. The leak checker runs after every test."""
from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass, field

import boto3
import httpx
import pytest
from sqlalchemy import select

from chalicelib import runtime
from chalicelib.api.jobs import FlowStillRunning
from chalicelib.db.models import AgentCommand, ApiJob, Host, PrimaryStorage, VmNic
from chalicelib.flows.agent_waits import TASK_TOKEN_ARG
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from hostagent.agent import Agent
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.http_transport import HttpTransport
from hostagent.queue_access import IssuedQueueAccess
from hostagent.sqs_transport import SqsTransport
from tests.support.cloud import GIB, Cloud, assert_rolled_back, build_cloud, vm_ips
from tests.support.invariants import assert_no_leaks
from tests.support.serverless import AgentThread, Serverless, aws_runtime, serverless_api
from tests.support.stepfunctions import MACHINE_PREFIX

FLOW_WAIT_SECONDS = 3  # how long one consumer delivery waits for its flow


class RecordingTransport:
    """The agent's transport, noting every command it took from its queue."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.taken: list[dict] = []

    def fetch_commands(self, wait_seconds: int) -> list[dict]:
        commands = self.inner.fetch_commands(wait_seconds)
        self.taken.extend(commands)
        return commands

    def send_report(self, report):
        return self.inner.send_report(report)

    def close(self) -> None:
        self.inner.close()


@dataclass
class KvmHost:
    uuid: str
    driver: SimulatorDriver
    transport: RecordingTransport
    agent: AgentThread

    def taken(self, name: str) -> list[dict]:
        return [c for c in self.transport.taken if c["name"] == name]


@dataclass
class ServerlessCloud:
    api: Serverless
    cloud: Cloud
    hosts: dict[str, KvmHost] = field(default_factory=dict)


@pytest.fixture
def aws(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with aws_runtime(db_url, tmp_path, flows=True,
                     flow_wait_seconds=FLOW_WAIT_SECONDS) as serverless:
        yield serverless


@pytest.fixture
def serverless(aws):
    import app as chalice_app

    with serverless_api(chalice_app, aws.settings.jobs_queue_url) as api:
        yield api


@pytest.fixture(autouse=True)
def no_leaks_after(aws):
    yield
    with aws.db.session() as db:
        assert_no_leaks(db)


def start_agent(api: Serverless, host: dict, driver: SimulatorDriver) -> KvmHost:
    """aerie-agent --sqs on the host, in-process: reports over HTTPS (the same WSGI app),
    commands from its own SQS queue with the credentials the control plane issues it."""
    reports = HttpTransport("http://aerie", host["uuid"], host["agentToken"],
                            http=httpx.WSGITransport(app=ChaliceWsgiApp(api.app.app)))
    transport = RecordingTransport(SqsTransport(
        IssuedQueueAccess(reports.fetch_queue_access), reports, max_wait_seconds=1))
    agent = AgentThread(Agent(driver, transport)).start()
    return KvmHost(host["uuid"], driver, transport, agent)


def wait_for(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def build(serverless):
    """Builds a cloud of KVM hosts, each with its agent; stops the agents afterwards."""
    made: list[ServerlessCloud] = []

    def make(hosts: int = 1, drivers: list[SimulatorDriver] | None = None) -> ServerlessCloud:
        built = ServerlessCloud(serverless, None)  # type: ignore[arg-type]

        def add_kvm_hosts(api: Serverless, cluster: str) -> list[str]:
            for n in range(hosts):
                host = api.do("POST", "/v1/hosts/kvm", {
                    "clusterUuid": cluster, "name": f"kvm-{n}",
                    "managementIp": f"10.0.0.{n + 5}", "deployAgent": False})
                driver = drivers[n] if drivers else SimulatorDriver(cpu_num=8,
                                                                    memory_bytes=16 * GIB)
                built.hosts[host["uuid"]] = start_agent(api, host, driver)
            return list(built.hosts)

        made.append(built)
        built.cloud = build_cloud(serverless, storage=100 * GIB, add_hosts=add_kvm_hosts)
        wait_for(lambda: {host_inventory(serverless, h)["status"] for h in built.hosts} ==
                 {"Connected"}, "the agents to connect")
        return built

    yield make
    for built in made:
        for host in built.hosts.values():
            host.agent.stop()


def host_inventory(api: Serverless, uuid: str) -> dict:
    return api.get(f"/v1/hosts/{uuid}").json()["inventory"]


def vm_inventory(api: Serverless, uuid: str) -> dict:
    return api.get(f"/v1/vm-instances/{uuid}").json()["inventory"]


def executions(chain: str) -> dict[str, str]:
    """Execution name (the job's uuid) -> status, for the chain's state machine."""
    listed = boto3.client("stepfunctions").list_executions(
        stateMachineArn=f"{MACHINE_PREFIX}{chain}")["executions"]
    return {e["name"]: e["status"] for e in listed}


def job_of(api: Serverless, method: str, path: str, body=None) -> dict:
    job = api.submit(method, path, body)
    assert job["state"] == "Succeeded", job
    return job


def test_the_vm_lifecycle_runs_on_step_functions_and_the_hosts_agent(build, aws):
    """Create, stop, start, reboot, destroy, expunge: each a job on the operations queue, a
    Step Functions execution named by the job, agent commands on the host's SQS queue."""
    world = build()
    api, cloud = world.api, world.cloud
    (kvm,) = world.hosts.values()
    total_memory = host_inventory(api, kvm.uuid)["totalMemoryCapacity"]

    created_job = job_of(api, "POST", "/v1/vm-instances", cloud.vm_request("web-1"))
    created = created_job["result"]
    uuid = created["uuid"]
    assert created["state"] == "Running" and created["hostUuid"] == kvm.uuid
    assert created_job["progress"]["flow"] == "create-vm"
    assert created_job["progress"]["state"] == "Succeeded"
    assert executions("create-vm") == {created_job["uuid"]: "SUCCEEDED"}
    with aws.db.session() as db:
        (nic,) = db.scalars(select(VmNic).where(VmNic.vm_instance_uuid == uuid)).all()
        assert ipaddress.ip_address(nic.ip) in ipaddress.ip_network("10.20.0.0/24")
        mac = nic.mac
    assert host_inventory(api, kvm.uuid)["availableMemoryCapacity"] == total_memory - 2 * GIB
    with aws.db.session() as db:
        storage = db.get(PrimaryStorage, cloud.primary_storage)
        assert storage.available_capacity == storage.total_capacity - GIB  # the root volume
    # The agent took both create commands from its SQS queue, each with its flow's task
    # token, and the simulated hypervisor runs the VM with what Aerie allocated.
    for name in ("volumes.create", "vm.create"):
        (command,) = kvm.taken(name)
        assert command["args"][TASK_TOKEN_ARG]
    spec = kvm.driver.vms[uuid].spec
    assert spec.nics[0].mac == mac and spec.nics[0].bridge == "br_eth0"
    assert [v.path for v in spec.volumes] == [
        f"/var/lib/aerie/ps/vms/{uuid}/{created['rootVolumeUuid']}.qcow2"]

    stopped = job_of(api, "PUT", f"/v1/vm-instances/{uuid}/actions/stop")
    assert stopped["result"]["state"] == "Stopped"
    assert kvm.driver.vms[uuid].state == "Stopped"
    assert host_inventory(api, kvm.uuid)["availableMemoryCapacity"] == total_memory
    started = job_of(api, "PUT", f"/v1/vm-instances/{uuid}/actions/start")
    assert started["result"]["state"] == "Running"
    assert vm_inventory(api, uuid)["hostUuid"] == kvm.uuid
    assert kvm.driver.vms[uuid].state == "Running"
    assert host_inventory(api, kvm.uuid)["availableMemoryCapacity"] == total_memory - 2 * GIB

    rebooted = job_of(api, "PUT", f"/v1/vm-instances/{uuid}/actions/reboot")
    assert rebooted["result"]["state"] == "Running" and len(kvm.taken("vm.reboot")) == 1

    destroyed = job_of(api, "DELETE", f"/v1/vm-instances/{uuid}")
    assert destroyed["result"]["state"] == "Destroyed"
    assert uuid not in kvm.driver.vms
    assert host_inventory(api, kvm.uuid)["availableMemoryCapacity"] == total_memory
    expunged = job_of(api, "PUT", f"/v1/vm-instances/{uuid}/actions/expunge")
    assert api.get(f"/v1/vm-instances/{uuid}").status_code == 404
    assert kvm.driver.volumes == {}
    with aws.db.session() as db:
        assert vm_ips(db) == []
        storage = db.get(PrimaryStorage, cloud.primary_storage)
        assert storage.available_capacity == storage.total_capacity

    for chain, job in (("stop-vm", stopped), ("start-vm", started), ("reboot-vm", rebooted),
                       ("destroy-vm", destroyed), ("expunge-vm", expunged)):
        # One execution each, whether one delivery saw it end or (on a loaded machine) a
        # delivery gave its turn up and the next one waited for the same execution.
        assert executions(chain) == {job["uuid"]: "SUCCEEDED"}


def test_a_failing_agent_command_rolls_back_as_embedded_and_leaks_nothing(build, aws):
    driver = SimulatorDriver(cpu_num=8, memory_bytes=16 * GIB)
    driver.fail_command("vm.create")
    world = build(drivers=[driver])
    api, cloud = world.api, world.cloud
    (kvm,) = world.hosts.values()

    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request("doomed"))
    assert job["state"] == "Failed", job
    assert_rolled_back(job, "vm.create-on-hypervisor", "AgentCommandFailed")
    assert "injected failure of vm.create" in job["error"]["message"]
    assert executions("create-vm") == {job["uuid"]: "FAILED"}
    assert api.get("/v1/vm-instances").json()["inventories"] == []
    full = host_inventory(api, kvm.uuid)
    assert full["availableMemoryCapacity"] == full["totalMemoryCapacity"]
    # The rollbacks' own commands (delete the volume files, destroy the domain) reach the
    # agent through its queue too; they are sent, not waited for.
    wait_for(lambda: kvm.driver.vms == {} and kvm.driver.volumes == {},
             "the rollbacks' commands to run on the host")
    assert kvm.taken("volumes.delete") and kvm.taken("vm.destroy")
    for command in kvm.taken("volumes.delete") + kvm.taken("vm.destroy"):
        assert TASK_TOKEN_ARG not in command["args"]  # no flow waits on them
    with aws.db.session() as db:
        assert vm_ips(db) == []


def test_a_flow_that_outlasts_one_delivery_completes_on_the_next_and_runs_once(build, aws):
    world = build()
    api, cloud = world.api, world.cloud
    (kvm,) = world.hosts.values()
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("slow-1"))["uuid"]

    kvm.agent.pause()  # the host is slow: the stop waits on it past one delivery
    accepted = api.api.request("PUT", f"/v1/vm-instances/{uuid}/actions/stop").json()
    job_uuid = accepted["jobUuid"]
    assert api.deliver_next()
    ((body, gave_up),) = api.given_up
    assert json.loads(body)["operationId"] == job_uuid
    assert isinstance(gave_up, FlowStillRunning)
    job = api.job(job_uuid)
    assert job["state"] == "Running", job
    assert job["progress"]["currentStep"] == "vm.stop-on-hypervisor"
    assert executions("stop-vm") == {job_uuid: "RUNNING"}
    assert vm_inventory(api, uuid)["state"] == "Stopping"

    kvm.agent.resume()
    started = time.monotonic()
    job = api.wait_job(job_uuid)
    # The consumer handed the message back when it gave up: it did not sit out the queue's
    # 30 s visibility timeout.
    assert time.monotonic() - started < 10
    assert job["state"] == "Succeeded", job
    assert job["result"]["state"] == "Stopped"
    assert executions("stop-vm") == {job_uuid: "SUCCEEDED"}  # one execution, not two
    assert len(kvm.taken("vm.stop")) == 1  # the host was asked once
    with aws.db.session() as db:
        stops = db.scalars(select(AgentCommand).where(AgentCommand.name == "vm.stop")).all()
        assert len(stops) == 1
        assert db.get(ApiJob, job_uuid).state == "Succeeded"
        host = db.get(Host, kvm.uuid)
        assert host.available_memory_capacity == host.total_memory_capacity
    assert len(api.given_up) == 1
    assert runtime.current() is aws
