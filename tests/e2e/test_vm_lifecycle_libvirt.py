"""The VM lifecycle end to end on a real `aerie-agent` with libvirt's test driver, against a
real `aerie up`, built and driven through the HTTP API only: CreateVmInstance makes the
volume files with the real `qemu-img` under the test's primary storage directory and defines
and starts the domain in libvirt; Stop, Start, Reboot, Destroy and Expunge follow it there;
a primary storage the agent cannot write fails the create at `vm.instantiate-volumes` with
the agent's own error, and leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand, Image
from tests.support.agent_process import Client, agent_log, control_plane, start_agent, stop
from tests.support.cloud import vm_ips
from tests.support.phases import Phases

if os.environ.get("CI", "").lower() == "true":
    import libvirt  # noqa: F401  (under CI it must be there: make test installs it)
    assert shutil.which("qemu-img"), "CI=true needs qemu-img (scripts/bootstrap installs it)"
else:
    pytest.importorskip("libvirt",
                        reason="libvirt-python is not installed (make test installs it)")
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed (scripts/bootstrap installs qemu-utils)",
                    allow_module_level=True)
pytestmark = pytest.mark.slow

MIB = 1024 * 1024
IMAGE_SIZE = 16 * MIB  # the root volume's virtual size: qemu-img makes it sparse
DATA_DISK_SIZE = 8 * MIB
VM_MEMORY = 128 * MIB
STORAGE = 10 * 1024 * MIB
REPORT_INTERVAL = 1  # host.ping.interval, seconds: how often the agent sends its VM list
TEST_DOMAIN = "6695eb01f6a4830479aa97f2502e193f"  # the domain libvirt's test driver starts with


@dataclass
class Cloud:
    api: Client
    db: Database
    host: str
    storage: str
    storage_dir: Path
    image: str
    l3: str
    offering: str
    disk_offering: str

    def vm_request(self, name: str, **overrides) -> dict:
        return {"name": name, "imageUuid": self.image, "instanceOfferingUuid": self.offering,
                "l3NetworkUuids": [self.l3], **overrides}


@pytest.fixture
def cloud(tmp_path) -> Iterator[Cloud]:
    """A zone with one KVM host whose agent runs libvirt's test driver, local primary
    storage in ``tmp_path/ps``, an image store, a flat network and the offerings."""
    phases = Phases()
    with control_plane(tmp_path) as plane:
        api = Client(plane.url)
        db = Database(f"sqlite:///{tmp_path / 'cp.db'}")
        agent = None
        phases.done("aerie up started")
        try:
            api.do("PUT", "/v1/global-configurations/host/ping.interval",
                   {"value": REPORT_INTERVAL})
            zone = api.do("POST", "/v1/zones", {"name": "zone-1"})["uuid"]
            cluster = api.do("POST", "/v1/clusters", {
                "zoneUuid": zone, "name": "cluster-1", "hypervisorType": "KVM"})["uuid"]
            host = api.do("POST", "/v1/hosts/kvm", {
                "clusterUuid": cluster, "name": "kvm-1", "managementIp": "127.0.0.1",
                "deployAgent": False})
            agent = start_agent(plane.url, host, tmp_path)
            storage_dir = tmp_path / "ps"
            storage = api.do("POST", "/v1/primary-storage/local-storage", {
                "zoneUuid": zone, "name": "local", "url": str(storage_dir),
                "totalCapacity": STORAGE})["uuid"]
            api.do("POST", f"/v1/clusters/{cluster}/primary-storage/{storage}")
            images = api.do("POST", "/v1/backup-storage/image-store", {
                "name": "images", "url": str(tmp_path / "images"),
                "hostname": "127.0.0.1"})["uuid"]
            api.do("POST", f"/v1/zones/{zone}/backup-storage/{images}")
            image_file = tmp_path / "images" / "tiny.qcow2"
            image_file.parent.mkdir()
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image_file),
                            str(IMAGE_SIZE)], check=True)
            image = api.do("POST", "/v1/images", {
                "name": "tiny", "url": image_file.as_uri(),
                "backupStorageUuids": [images]})["uuid"]
            # AddImage records the image; nothing measures its size on backup storage yet:
            # write the size that would have measured straight into the control plane's
            # SQLite file (`aerie up` reads it from there on every create).
            with db.session() as session:
                session.get(Image, image).size = IMAGE_SIZE
            l2 = api.do("POST", "/v1/l2-networks/no-vlan", {
                "zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"})["uuid"]
            api.do("POST", f"/v1/l2-networks/{l2}/clusters/{cluster}")
            l3 = api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2,
                                                    "name": "flat-l3"})["uuid"]
            api.do("POST", f"/v1/l3-networks/{l3}/ip-ranges", {
                "name": "r", "startIp": "10.20.0.10", "endIp": "10.20.0.20",
                "netmask": "255.255.255.0", "gateway": "10.20.0.1"})
            offering = api.do("POST", "/v1/instance-offerings", {
                "name": "small", "cpuNum": 1, "memorySize": VM_MEMORY})["uuid"]
            disk_offering = api.do("POST", "/v1/disk-offerings", {
                "name": "data", "diskSize": DATA_DISK_SIZE})["uuid"]
            phases.done("cloud built through the API")
            api.wait_status(host["uuid"], "Connected", within=20)
            phases.done("agent Connected")
            yield Cloud(api, db, host["uuid"], storage, storage_dir, image, l3, offering,
                        disk_offering)
        finally:
            if agent is not None:
                stop(agent)
            db.dispose()
            phases.print("setup")


# --- what the test reads ----------------------------------------------------------------


def vm(cloud: Cloud, uuid: str) -> dict:
    return cloud.api.get(f"/v1/vm-instances/{uuid}").json()["inventory"]


def storage_available(cloud: Cloud) -> int:
    return cloud.api.get(f"/v1/primary-storage/{cloud.storage}").json()[
        "inventory"]["availableCapacity"]


def used_ips(cloud: Cloud) -> list[str]:
    """The VM NICs' addresses (the flat network's DHCP server holds one more). No API lists
    an L3 network's used IPs yet: read the control plane's database."""
    with cloud.db.session() as session:
        return [used.ip for used in vm_ips(session)]


def agent_results(cloud: Cloud, name: str) -> list[AgentCommand]:
    """The host's answers to ``name`` commands, oldest first (the agent's own report)."""
    with cloud.db.session() as session:
        found = session.query(AgentCommand).filter_by(host_uuid=cloud.host, name=name) \
            .order_by(AgentCommand.create_date).all()
        session.expunge_all()
        return found


def answer(cloud: Cloud, name: str) -> dict:
    """What the agent answered to the latest ``name`` command: the driver's result."""
    latest = agent_results(cloud, name)[-1]
    assert latest.state == "Succeeded", (name, latest.error)
    return json.loads(latest.result)


def qemu_img_info(path: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     capture_output=True, text=True, check=True).stdout)


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def next_reports(cloud: Cloud, count: int = 2, within: float = 10) -> dict:
    """The host as it stands after ``count`` more full reports (facts and VM list)."""
    seen = {cloud.api.host(cloud.host)["lastReportDate"]}
    deadline = time.monotonic() + within
    while len(seen) <= count:
        assert time.monotonic() < deadline, f"no {count} reports within {within}s"
        time.sleep(0.1)
        seen.add(cloud.api.host(cloud.host)["lastReportDate"])
    return cloud.api.host(cloud.host)


def strangers(host: dict) -> set[str]:
    return set(json.loads(host["strangerVmUuids"] or "[]"))


# --- the tests --------------------------------------------------------------------------


def test_the_lifecycle_runs_on_libvirt_with_real_volume_files(cloud, tmp_path):
    api, phases = cloud.api, Phases()
    available_before = storage_available(cloud)

    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request(
        "web-1", dataDiskOfferingUuids=[cloud.disk_offering],
        systemTags=["hostname::web-1"]))
    assert job["state"] == "Succeeded", (job, agent_log(tmp_path))
    created = job["result"]
    uuid = created["uuid"]
    phases.done("CreateVmInstance")
    assert created["state"] == "Running" and created["hostUuid"] == cloud.host
    assert job["progress"]["flow"] == "create-vm"

    # The agent made both volume files with qemu-img, where the control plane put them.
    (volumes_created,) = agent_results(cloud, "volumes.create")
    assert volumes_created.state == "Succeeded", volumes_created.error
    paths = [v["path"] for v in json.loads(volumes_created.result)["volumes"]]
    vm_dir = cloud.storage_dir / "vms" / uuid
    assert paths[0] == str(vm_dir / f"{created['rootVolumeUuid']}.qcow2")
    assert len(paths) == 2 and all(Path(p).parent == vm_dir for p in paths)
    sizes = [(qemu_img_info(p)["format"], qemu_img_info(p)["virtual-size"]) for p in paths]
    assert sizes == [("qcow2", IMAGE_SIZE), ("qcow2", DATA_DISK_SIZE)]
    # The root volume is an overlay of the image, downloaded once into the storage's cache.
    cached = cloud.storage_dir / "imagecache" / f"{created['imageUuid']}.qcow2"
    assert qemu_img_info(paths[0])["full-backing-filename"] == str(cached)
    assert "full-backing-filename" not in qemu_img_info(paths[1])
    assert storage_available(cloud) == available_before - IMAGE_SIZE - DATA_DISK_SIZE
    (ip,) = used_ips(cloud)
    assert ip.startswith("10.20.0.")
    # ... and libvirt runs the domain: the agent's VM list says so (a VM it did not list
    # would be corrected to Stopped) and it is Aerie's VM, not a stranger.
    (vm_created,) = agent_results(cloud, "vm.create")
    assert json.loads(vm_created.result) == {"state": "Running"}
    spec = json.loads(vm_created.args)  # what libvirt's domain was defined from
    assert [(v["path"], v["deviceId"]) for v in spec["volumes"]] == [(paths[0], 0),
                                                                     (paths[1], 1)]
    (nic,) = spec["nics"]
    assert nic["bridge"] == "br_eth0" and nic["ip"] == ip and nic["mac"]
    assert (spec["cpuNum"], spec["memorySize"], spec["hostname"]) == (1, VM_MEMORY, "web-1")
    host = next_reports(cloud)
    assert vm(cloud, uuid)["state"] == "Running"
    assert strangers(host) == {TEST_DOMAIN}
    phases.done("two reports: libvirt runs it")

    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/stop")["state"] == "Stopped"
    phases.done("StopVmInstance")
    assert answer(cloud, "vm.stop") == {"state": "Stopped"}
    host = next_reports(cloud)
    assert vm(cloud, uuid)["state"] == "Stopped"
    # The stopped domain stays defined in libvirt (vm.start names only the uuid). Today the
    # control plane counts it among the host's strangers: its VM sync knows only the VMs
    # whose hostUuid is the host, and a stopped VM keeps just its lastHostUuid.
    assert strangers(host) - {uuid} == {TEST_DOMAIN}
    phases.done("two reports: still Stopped")

    started = api.do("PUT", f"/v1/vm-instances/{uuid}/actions/start")
    assert started["state"] == "Running" and started["hostUuid"] == cloud.host
    phases.done("StartVmInstance")
    assert answer(cloud, "vm.start") == {"state": "Running"}
    assert api.do("PUT", f"/v1/vm-instances/{uuid}/actions/reboot")["state"] == "Running"
    phases.done("RebootVmInstance")
    assert answer(cloud, "vm.reboot") == {"state": "Running"}
    host = next_reports(cloud)
    assert vm(cloud, uuid)["state"] == "Running" and strangers(host) == {TEST_DOMAIN}
    phases.done("two reports: still Running")

    assert api.do("DELETE", f"/v1/vm-instances/{uuid}")["state"] == "Destroyed"
    phases.done("DestroyVmInstance")
    assert answer(cloud, "vm.destroy") == {}
    # The domain is gone from libvirt: were it still defined, the agent would list it and
    # the control plane would record it as a stranger (the VM is on no host any more).
    destroyed = vm(cloud, uuid)
    assert destroyed["hostUuid"] is None and destroyed["lastHostUuid"] == cloud.host
    host = next_reports(cloud)
    assert strangers(host) == {TEST_DOMAIN}
    assert vm(cloud, uuid)["state"] == "Destroyed"
    assert all(Path(p).exists() for p in paths)  # kept until expunged
    assert used_ips(cloud) == [ip]
    phases.done("two reports: domain gone")

    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/expunge")
    phases.done("ExpungeVmInstance")
    assert api.get(f"/v1/vm-instances/{uuid}").status_code == 404
    assert answer(cloud, "volumes.delete") == {}
    vm_directory = str(Path(paths[0]).parent)
    assert json.loads(agent_results(cloud, "volumes.delete")[-1].args) == {
        "paths": paths, "directory": vm_directory}
    # The files are gone, and the VM's folder with them; the image stays cached for the next.
    assert [f for f in files_under(cloud.storage_dir)
            if f.parent.name != "imagecache"] == []
    assert not Path(vm_directory).exists()
    assert used_ips(cloud) == []
    assert storage_available(cloud) == available_before
    assert " failed " not in agent_log(tmp_path)
    phases.print("lifecycle")


def test_storage_the_agent_cannot_write_fails_the_create_and_leaves_nothing(cloud, tmp_path):
    api, phases = cloud.api, Phases()
    # A file where the storage's directory should be: the agent cannot make its image cache
    # (the first thing the root volume needs) in it.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("in the way\n")
    zone = api.get(f"/v1/primary-storage/{cloud.storage}").json()["inventory"]["zoneUuid"]
    cluster = api.host(cloud.host)["clusterUuid"]
    api.do("DELETE", f"/v1/clusters/{cluster}/primary-storage/{cloud.storage}")
    broken = api.do("POST", "/v1/primary-storage/local-storage", {
        "zoneUuid": zone, "name": "broken", "url": str(blocker / "ps"),
        "totalCapacity": STORAGE})["uuid"]
    api.do("POST", f"/v1/clusters/{cluster}/primary-storage/{broken}")
    phases.done("broken primary storage attached")

    job = api.submit("POST", "/v1/vm-instances", cloud.vm_request("doomed"))
    phases.done("CreateVmInstance (fails)")
    assert job["state"] == "Failed", job
    error = job["error"]
    assert error["code"] == "FlowFailed"
    assert error["details"]["failedStep"] == "vm.instantiate-volumes"
    assert error["details"]["error"]["code"] == "AgentCommandFailed"
    # The agent's own words reach the user: what it could not do, and why.
    assert f"cannot create image cache directory {blocker}/ps/imagecache" in \
        error["message"], error
    assert "Not a directory" in error["message"], error
    assert [r["step"] for r in error["details"]["rollbacks"]] == [
        "vm.instantiate-volumes", "vm.allocate-nics", "vm.allocate-volumes",
        "vm.allocate-host", "vm.select-backup-storage"]
    assert all(r["succeeded"] for r in error["details"]["rollbacks"]), \
        error["details"]["rollbacks"]

    assert api.get("/v1/vm-instances").json()["inventories"] == []
    inventory = api.get(f"/v1/primary-storage/{broken}").json()["inventory"]
    assert inventory["availableCapacity"] == inventory["totalCapacity"] == STORAGE
    assert used_ips(cloud) == []
    host = api.host(cloud.host)
    assert host["availableMemoryCapacity"] == host["totalMemoryCapacity"]
    assert blocker.read_text() == "in the way\n" and files_under(cloud.storage_dir) == []
    # The rollback's `volumes.delete` (sent, not waited for) finds nothing to delete and
    # says so without an error; no domain was ever defined.
    host = next_reports(cloud)
    (deleted,) = agent_results(cloud, "volumes.delete")
    assert deleted.state == "Succeeded", deleted.error
    assert strangers(host) == {TEST_DOMAIN}
    assert "internal agent error" not in agent_log(tmp_path)
    phases.done("two reports: nothing on the host")
    phases.print("failed create")
