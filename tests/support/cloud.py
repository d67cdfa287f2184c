"""A small cloud built through the API, ready for VMs: a zone, a cluster with its hosts
(simulator hosts, or whatever ``add_hosts`` adds), primary and backup storage, an image, a
flat L2/L3 network and an instance offering."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GIB = 2**30


@dataclass
class Cloud:
    zone: str
    cluster: str
    hosts: list[str]
    primary_storage: str
    backup_storage: str
    image: str
    l2: str
    l3: str
    offering: str
    extra: dict[str, Any] = field(default_factory=dict)

    def vm_request(self, name: str, **overrides: Any) -> dict[str, Any]:
        return {"name": name, "imageUuid": self.image, "instanceOfferingUuid": self.offering,
                "l3NetworkUuids": [self.l3], **overrides}


def build_cloud(api, *, hosts: int = 2, cpu_num: int = 8, memory_size: int = 16 * GIB,
                storage: int = 1024 * GIB, image_size: int = GIB, cidr: str = "10.20.0.0/24",
                simulator: dict[str, Any] | None = None, vm_cpu: int = 2,
                vm_memory: int = 2 * GIB,
                add_hosts: Callable[[Any, str], list[str]] | None = None) -> Cloud:
    """``add_hosts(api, cluster_uuid)`` adds the cluster's hosts (a KVM cluster then) and
    returns their uuids; without it, ``hosts`` simulator hosts are added."""
    zone = api.do("POST", "/v1/zones", {"name": "zone-1"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {
        "zoneUuid": zone, "name": "cluster-1",
        "hypervisorType": "KVM" if add_hosts else "Simulator"})["uuid"]
    if add_hosts is not None:
        host_uuids = add_hosts(api, cluster)
    else:
        host_uuids = [api.do("POST", "/v1/hosts/simulator", {
            "clusterUuid": cluster, "name": f"sim-{n}", "cpuNum": cpu_num,
            "memorySize": memory_size, "simulator": simulator or {}})["uuid"]
            for n in range(hosts)]
    ps = api.do("POST", "/v1/primary-storage/local-storage", {
        "zoneUuid": zone, "name": "local", "url": "/var/lib/aerie/ps",
        "totalCapacity": storage})["uuid"]
    api.do("POST", f"/v1/clusters/{cluster}/primary-storage/{ps}")
    bs = api.do("POST", "/v1/backup-storage/image-store", {
        "name": "images", "url": "/images", "hostname": "127.0.0.1"})["uuid"]
    api.do("POST", f"/v1/zones/{zone}/backup-storage/{bs}")
    image = api.do("POST", "/v1/images", {"name": "tiny", "url": "http://images/tiny.qcow2",
                                          "backupStorageUuids": [bs]})["uuid"]
    if image_size:
        _set_image_size(image, image_size)
    l2 = api.do("POST", "/v1/l2-networks/no-vlan", {"zoneUuid": zone, "name": "flat",
                                                    "physicalInterface": "eth0"})["uuid"]
    api.do("POST", f"/v1/l2-networks/{l2}/clusters/{cluster}")
    l3 = api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2, "name": "flat-l3"})["uuid"]
    api.do("POST", f"/v1/l3-networks/{l3}/ip-ranges/by-cidr", {"name": "r",
                                                               "networkCidr": cidr})
    offering = api.do("POST", "/v1/instance-offerings", {
        "name": "small", "cpuNum": vm_cpu, "memorySize": vm_memory})["uuid"]
    return Cloud(zone, cluster, host_uuids, ps, bs, image, l2, l3, offering)


def _set_image_size(image_uuid: str, size: int) -> None:
    """Images are records until downloading lands; give this one the size a download
    would have measured."""
    from chalicelib import runtime
    from chalicelib.db.models import Image

    with runtime.current().db.session() as db:
        db.get(Image, image_uuid).size = size


def vm_ips(db) -> list:
    """Addresses held by VM NICs (a flat network's DHCP server holds one of its own)."""
    from chalicelib.db.models import UsedIp

    return db.query(UsedIp).filter(UsedIp.use_for == "VmNic").all()


CREATE_STEPS = ["vm.select-backup-storage", "vm.allocate-host", "vm.allocate-volumes",
                "vm.allocate-nics", "vm.instantiate-volumes", "vm.create-on-hypervisor"]


def assert_rolled_back(job: dict, failed_step: str, code: str) -> None:
    progress = job["error"]["details"]
    assert job["error"]["code"] == "FlowFailed"
    assert progress["failedStep"] == failed_step and progress["error"]["code"] == code
    done = CREATE_STEPS[:CREATE_STEPS.index(failed_step) + 1]
    assert [r["step"] for r in progress["rollbacks"]] == list(reversed(done))
    assert all(r["succeeded"] for r in progress["rollbacks"])
