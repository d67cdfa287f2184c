"""The VM lifecycle through the HTTP API on simulator hosts, as flows with rollback: create,
stop, start, reboot, destroy, recover, expunge; failures injected at every step of create
roll back everything; the leak checker runs after every test."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import json

import pytest

from chalicelib.agents.protocol import ReportedVm
from chalicelib.agents.vm_sync import sync_vms
from chalicelib.db.models import Host, L3Network, PrimaryStorage
from tests.support.cloud import GIB, Cloud, assert_rolled_back, build_cloud, vm_ips
from tests.support.invariants import assert_no_leaks


@pytest.fixture
def running_hosts(control_plane):
    control_plane.simulated_hosts.start()
    yield control_plane


@pytest.fixture
def cloud(api, running_hosts) -> Cloud:
    built = build_cloud(api, hosts=2, storage=100 * GIB)
    wait_connected(api, built.hosts)
    return built


@pytest.fixture(autouse=True)
def no_leaks_after(control_plane):
    yield
    with control_plane.db.session() as db:
        assert_no_leaks(db)


def wait_connected(api, hosts: list[str]) -> None:
    import time

    deadline = time.monotonic() + 10
    while {api.get(f"/v1/hosts/{h}").json()["inventory"]["status"] for h in hosts} != {
            "Connected"}:
        assert time.monotonic() < deadline, "simulator hosts did not connect"
        time.sleep(0.05)


def vm(api, uuid: str) -> dict:
    return api.get(f"/v1/vm-instances/{uuid}").json()["inventory"]


def host(api, uuid: str) -> dict:
    return api.get(f"/v1/hosts/{uuid}").json()["inventory"]


def test_a_vm_is_created_running_with_a_host_an_ip_and_volumes(api, cloud, control_plane):
    before = {h: host(api, h)["availableMemoryCapacity"] for h in cloud.hosts}
    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request(
        "web-1", systemTags=["hostname::web-1"]))
    assert job["state"] == "Succeeded", job
    created = job["result"]
    assert created["state"] == "Running" and created["hostUuid"] in cloud.hosts
    assert job["resourceUuid"] == created["uuid"]
    assert job["progress"]["flow"] == "create-vm" and job["progress"]["state"] == "Succeeded"
    with control_plane.db.session() as db:
        (used,) = vm_ips(db)
        assert ipaddress.ip_address(used.ip) in ipaddress.ip_network("10.20.0.0/24")
        storage = db.get(PrimaryStorage, cloud.primary_storage)
        assert storage.available_capacity == storage.total_capacity - GIB  # the root volume
    chosen = host(api, created["hostUuid"])
    assert chosen["availableMemoryCapacity"] == before[chosen["uuid"]] - 2 * GIB
    # The simulated hypervisor really runs it, with the volumes and NIC Aerie allocated.
    hypervisor = control_plane.simulated_hosts.executors[created["hostUuid"]].driver
    spec = hypervisor.vms[created["uuid"]].spec
    assert spec.nics[0].mac and spec.nics[0].bridge == "br_eth0"
    assert [v.path for v in spec.volumes] == [
        f"/var/lib/aerie/ps/vms/{created['uuid']}/{created['rootVolumeUuid']}.qcow2"]
    assert set(hypervisor.volumes) == {v.path for v in spec.volumes}


def test_the_whole_lifecycle_keeps_capacity_and_ips_exact(api, cloud, control_plane):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("db-1"))["uuid"]
    on = vm(api, uuid)["hostUuid"]
    full = host(api, on)["totalMemoryCapacity"]
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop")["state"] == "Stopped"
    assert host(api, on)["availableMemoryCapacity"] == full
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/start")["state"] == "Running"
    assert vm(api, uuid)["hostUuid"] == on  # where its volumes are
    assert host(api, on)["availableMemoryCapacity"] == full - 2 * GIB
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/reboot")["state"] == "Running"
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop",
                  {"type": "cold"})["state"] == "Stopped"
    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/start")
    destroyed = api.do("DELETE", f"/v1/vm-instances/{uuid}")
    assert destroyed["state"] == "Destroyed"
    assert host(api, on)["availableMemoryCapacity"] == full
    hypervisor = control_plane.simulated_hosts.executors[on].driver
    assert uuid not in hypervisor.vms
    with control_plane.db.session() as db:
        assert len(vm_ips(db)) == 1  # a destroyed VM keeps its IP until expunged
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/recover")["state"] == "Stopped"
    api.do("DELETE", f"/v1/vm-instances/{uuid}")
    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/expunge")
    assert api.get(f"/v1/vm-instances/{uuid}").status_code == 404
    with control_plane.db.session() as db:
        assert vm_ips(db) == []
        storage = db.get(PrimaryStorage, cloud.primary_storage)
        assert storage.available_capacity == storage.total_capacity
    assert hypervisor.volumes == {}


@pytest.mark.parametrize("call, state", [
    ("start", "Running"), ("recover", "Running"), ("expunge", "Running"),
])
def test_an_illegal_transition_is_a_409_on_the_call_and_changes_nothing(api, cloud, call,
                                                                        state):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("app-1"))["uuid"]
    reply = api.request("PUT", f"/v1/vm-instances/{uuid}/actions/{call}")
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "InvalidState" and f"cannot {call} a VM that is {state}" in \
        error["message"]
    assert vm(api, uuid)["state"] == state


@pytest.mark.parametrize("body, status, field", [
    ({"imageUuid": "0" * 32}, 404, "imageUuid"),
    ({"l3NetworkUuids": []}, 400, "l3NetworkUuids"),
    ({"instanceOfferingUuid": "0" * 32}, 404, "instanceOfferingUuid"),
    ({"systemTags": ["hostname::-bad-"]}, 400, "systemTags"),
    ({"systemTags": ["color::blue"]}, 400, "systemTags"),
    ({"hostUuid": "0" * 32}, 404, "hostUuid"),
])
def test_bad_create_requests_are_refused_on_the_call(api, cloud, control_plane, body, status,
                                                     field):
    reply = api.request("POST", "/v1/vm-instances", json=cloud.vm_request("x", **body))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["details"]["field"] == field
    assert api.get("/v1/vm-instances").json()["inventories"] == []


def test_the_same_l3_twice_is_refused(api, cloud):
    reply = api.request("POST", "/v1/vm-instances", json=cloud.vm_request(
        "x", l3NetworkUuids=[cloud.l3, cloud.l3]))
    assert reply.status_code == 400 and "twice" in reply.json()["error"]["message"]


def failed_create(api, cloud: Cloud, **overrides) -> dict:
    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request("doomed", **overrides))
    assert job["state"] == "Failed", job
    assert api.get("/v1/vm-instances").json()["inventories"] == []  # nothing half-made
    return job


def test_a_create_checks_its_image_again_when_it_runs(api, cloud, control_plane,
                                                      monkeypatch):
    from sqlalchemy import delete

    from chalicelib.db.models import Image, ImageBackupStorageRef

    held = []
    monkeypatch.setattr(control_plane.jobs, "submit", lambda *ticket: held.append(ticket))
    accepted = api.request("POST", "/v1/vm-instances", json=cloud.vm_request("late"))
    assert accepted.status_code == 202, accepted.text
    # The image goes away while the job waits for its turn.
    with control_plane.db.session() as db:
        db.execute(delete(ImageBackupStorageRef).where(
            ImageBackupStorageRef.image_uuid == cloud.image))
        db.execute(delete(Image).where(Image.uuid == cloud.image))
    monkeypatch.undo()
    (ticket,) = held
    control_plane.jobs.submit(*ticket)
    job = api.wait_job(accepted.json()["jobUuid"])
    assert job["state"] == "Failed", job
    assert job["error"]["code"] == "ResourceNotFound"  # a 404 on the call, had it run then
    assert job["error"]["details"] == {"field": "imageUuid", "uuid": cloud.image}
    assert api.get("/v1/vm-instances").json()["inventories"] == []


def test_each_operations_result_is_the_vm_as_it_reads_back(api, cloud):
    created = api.do("POST", "/v1/vm-instances", cloud.vm_request(
        "shown", systemTags=["hostname::shown"], userTags=["web"]))
    assert created == vm(api, created["uuid"])
    (nic,) = created["vmNics"]
    assert nic["ip"] and nic["mac"] and nic["vmInstanceUuid"] == created["uuid"]
    for method, action, state in [("PUT", "/actions/stop", "Stopped"),
                                  ("PUT", "/actions/start", "Running"),
                                  ("DELETE", "", "Destroyed"),
                                  ("PUT", "/actions/recover", "Stopped")]:
        result = api.do(method, f"/v1/vm-instances/{created['uuid']}{action}")
        assert result["state"] == state
        assert result == vm(api, created["uuid"])


@pytest.mark.parametrize("command, step", [("volumes.create", "vm.instantiate-volumes"),
                                           ("vm.create", "vm.create-on-hypervisor")])
def test_a_failing_agent_command_rolls_back_every_step(api, running_hosts, command, step):
    cloud = build_cloud(api, hosts=1, simulator={"failCommands": [command]})
    wait_connected(api, cloud.hosts)
    job = failed_create(api, cloud)
    assert_rolled_back(job, step, "AgentCommandFailed")
    assert f"injected failure of {command}" in job["error"]["message"]
    full = host(api, cloud.hosts[0])
    assert full["availableMemoryCapacity"] == full["totalMemoryCapacity"]
    hypervisor = running_hosts.simulated_hosts.executors[cloud.hosts[0]].driver
    _wait_for(lambda: hypervisor.vms == {} and hypervisor.volumes == {})


def _wait_for(condition, timeout: float = 5) -> None:
    """Rollbacks' own agent commands are sent, not waited for: give the host a moment."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_an_image_no_attached_backup_storage_holds_fails_the_first_step(api, cloud,
                                                                         control_plane):
    api.do("DELETE", f"/v1/zones/{cloud.zone}/backup-storage/{cloud.backup_storage}")
    job = failed_create(api, cloud)
    assert_rolled_back(job, "vm.select-backup-storage", "StepFailed")
    assert "NoBackupStorageAvailable" in job["error"]["message"]


def test_no_host_with_room_fails_allocation_and_says_why(api, cloud):
    big = api.do("POST", "/v1/instance-offerings", {"name": "huge", "cpuNum": 2,
                                                    "memorySize": 64 * GIB})["uuid"]
    job = failed_create(api, cloud, instanceOfferingUuid=big)
    assert_rolled_back(job, "vm.allocate-host", "StepFailed")
    assert "NoHostAvailable" in job["error"]["message"]


def test_a_disconnected_host_takes_no_new_vm(api, cloud, control_plane):
    with control_plane.db.session() as db:
        for uuid in cloud.hosts:
            db.get(Host, uuid).status = "Disconnected"
    job = failed_create(api, cloud)
    assert "Connected" in job["error"]["message"]


def test_too_little_primary_storage_is_seen_by_the_allocator(api, cloud, control_plane):
    with control_plane.db.session() as db:  # the rest is held by something else
        storage = db.get(PrimaryStorage, cloud.primary_storage)
        storage.total_capacity = storage.available_capacity = GIB
    disk = api.do("POST", "/v1/disk-offerings", {"name": "data", "diskSize": GIB})["uuid"]
    job = failed_create(api, cloud, dataDiskOfferingUuids=[disk])
    # The host allocator already sees the storage cannot hold 2 GiB.
    assert job["error"]["details"]["failedStep"] == "vm.allocate-host"
    with control_plane.db.session() as db:
        assert db.get(PrimaryStorage, cloud.primary_storage).available_capacity == GIB


def test_a_full_l3_network_fails_the_nic_step_and_releases_the_rest(api, cloud,
                                                                      control_plane):
    second = api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": cloud.l2,
                                                "name": "empty"})["uuid"]
    job = failed_create(api, cloud, l3NetworkUuids=[cloud.l3, second])
    assert_rolled_back(job, "vm.allocate-nics", "StepFailed")
    with control_plane.db.session() as db:
        assert vm_ips(db) == []  # the first NIC's IP went back too
        assert db.get(L3Network, second) is not None


def test_concurrent_creates_get_distinct_ips_and_exact_capacity(api, running_hosts):
    cloud = build_cloud(api, hosts=3, cpu_num=4, memory_size=16 * GIB, cidr="10.30.0.0/27",
                        vm_cpu=1, vm_memory=GIB)
    wait_connected(api, cloud.hosts)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda n: api.submit(
            "POST", "/v1/vm-instances", cloud.vm_request(f"vm-{n}")), range(30)))
    succeeded = [job for job in jobs if job["state"] == "Succeeded"]
    # 32 addresses in a /27 minus network, gateway and broadcast, and the flat network's
    # DHCP server, leave 28 for VMs.
    assert len(succeeded) == 28
    with running_hosts.db.session() as db:
        ips = [used.ip for used in vm_ips(db)]
    assert len(ips) == len(set(ips)) == 28
    held = sum(host(api, h)["totalMemoryCapacity"] - host(api, h)["availableMemoryCapacity"]
               for h in cloud.hosts)
    assert held == 28 * GIB
    failed = [job for job in jobs if job["state"] == "Failed"]
    assert len(failed) == 2
    assert all("NoFreeIp" in job["error"]["message"] for job in failed)


def test_a_stopped_vm_defined_on_its_last_host_is_no_stranger(api, cloud, control_plane):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("sleeper"))["uuid"]
    on = vm(api, uuid)["hostUuid"]
    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop")
    hypervisor = control_plane.simulated_hosts.executors[on].driver
    assert uuid in hypervisor.vms  # still defined there, stopped
    with control_plane.db.session() as db:  # the host's next report lists it
        sync_vms(db, db.get(Host, on), [ReportedVm(uuid=uuid, state="Stopped"),
                                        ReportedVm(uuid="f" * 32, state="Running")])
    assert host(api, on)["strangerVmUuids"] == json.dumps(["f" * 32])
    assert vm(api, uuid)["state"] == "Stopped"


def test_a_host_that_lost_a_stopped_vm_defines_it_again_on_start(api, cloud, control_plane):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("phoenix"))["uuid"]
    on = vm(api, uuid)["hostUuid"]
    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop")
    hypervisor = control_plane.simulated_hosts.executors[on].driver
    hypervisor.destroy_vm(uuid)  # the host was rebuilt, or someone undefined it
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/start")["state"] == "Running"
    assert hypervisor.vms[uuid].spec.nics[0].physical_interface == "eth0"


def test_each_state_change_is_announced_once_committed(api, cloud):
    from chalicelib import events

    seen: list[tuple[str, str]] = []
    unsubscribe = events.subscribe(lambda name, payload: seen.append(
        (payload["from"], payload["to"])) if name == "vm.state.changed" else None)
    try:
        uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("loud"))["uuid"]
        api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop")
        refused = api.request("PUT", f"/v1/vm-instances/{uuid}/actions/stop")
        assert refused.status_code == 409
    finally:
        unsubscribe()
    # The validation dry runs at acceptance changed states too, but were rolled back: silent.
    assert seen == [("Created", "Starting"), ("Starting", "Running"),
                    ("Running", "Stopping"), ("Stopping", "Stopped")]


def test_a_flow_engine_that_fails_leaves_no_vm_half_made(api, cloud, control_plane,
                                                         monkeypatch):
    def refuse(chain, job_uuid, context):
        raise RuntimeError("the flow engine is down")
    monkeypatch.setattr(control_plane.flows, "run", refuse)
    job = failed_create(api, cloud)  # the VM is gone, not left Starting
    assert job["error"]["code"] == "InternalError"
    capacity = host(api, cloud.hosts[0])
    assert capacity["availableMemoryCapacity"] == capacity["totalMemoryCapacity"]


def test_a_failed_rollback_leaves_the_vm_in_error_and_destroy_expunge_clean_it(
        api, running_hosts, monkeypatch):
    from chalicelib.compute import vm_steps

    cloud = build_cloud(api, hosts=1, simulator={"failCommands": ["vm.create"]})
    wait_connected(api, cloud.hosts)

    def stuck(db, vm_uuid):
        raise RuntimeError("the NICs could not be released")
    monkeypatch.setattr(vm_steps, "_release_nics", stuck)
    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request("half"))
    assert job["state"] == "Failed"
    rollbacks = {r["step"]: r for r in job["error"]["details"]["rollbacks"]}
    assert not rollbacks["vm.allocate-nics"]["succeeded"]
    assert rollbacks["vm.allocate-host"]["succeeded"]  # the others still ran
    (left,) = api.get("/v1/vm-instances").json()["inventories"]
    assert left["state"] == "Error" and left["hostUuid"] is None  # kept, to be seen
    monkeypatch.undo()
    api.do("DELETE", f"/v1/vm-instances/{left['uuid']}")
    api.do("PUT", f"/v1/vm-instances/{left['uuid']}/actions/expunge")
    with running_hosts.db.session() as db:
        assert vm_ips(db) == []


def test_renaming_a_vm_waits_in_the_vms_own_queue(api, cloud):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("old-name"))["uuid"]
    job = api.submit("PUT", f"/v1/vm-instances/{uuid}", {"name": "new-name"})
    assert job["signature"] == f"vm:{uuid}" and vm(api, uuid)["name"] == "new-name"
