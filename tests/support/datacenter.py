"""Building a data center straight in the database (zones, clusters, hosts, storage, networks,
VMs) for the tests of the domain functions that place VMs; the API is not what they test."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from chalicelib.db.base import Base, new_uuid
from chalicelib.db.database import Database
from chalicelib.db.models import (
    Account,
    BackupStorage,
    BackupStorageZoneRef,
    Cluster,
    Host,
    Image,
    ImageBackupStorageRef,
    IpRange,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    UsedIp,
    VmInstance,
    Volume,
    Zone,
)

GiB = 1 << 30
M = TypeVar("M", bound=Base)


@dataclass
class Builder:
    """Adds resources owned by admin in one session; each method returns the row's uuid."""

    session: Session

    def __post_init__(self) -> None:
        self.account = self.session.scalar(select(Account.uuid).where(Account.name == "admin"))

    def _add(self, resource: M) -> str:
        resource.account_uuid = self.account
        self.session.add(resource)
        self.session.flush()
        return resource.uuid

    def zone(self, name: str = "zone") -> str:
        return self._add(Zone(name=name))

    def cluster(self, zone: str, name: str = "cluster", state: str = "Enabled") -> str:
        return self._add(Cluster(zone_uuid=zone, name=name, state=state))

    def host(self, cluster: str, name: str = "host", *, cpu: int = 16, memory: int = 64 * GiB,
             status: str = "Connected", state: str = "Enabled") -> str:
        zone = self.session.get(Cluster, cluster).zone_uuid
        return self._add(Host(
            zone_uuid=zone, cluster_uuid=cluster, name=name, management_ip=f"mgmt-{name}",
            status=status, state=state, cpu_num=cpu, total_cpu_capacity=cpu,
            available_cpu_capacity=cpu, total_memory_capacity=memory,
            available_memory_capacity=memory))

    def primary_storage(self, zone: str, clusters: list[str], *, capacity: int = 1000 * GiB,
                        name: str = "ps", state: str = "Enabled") -> str:
        uuid = self._add(PrimaryStorage(
            zone_uuid=zone, name=name, type="NFS", url="nfs:/export", state=state,
            total_capacity=capacity, available_capacity=capacity))
        for cluster in clusters:
            self.session.add(PrimaryStorageClusterRef(primary_storage_uuid=uuid,
                                                      cluster_uuid=cluster))
        self.session.flush()
        return uuid

    def l2(self, zone: str, clusters: list[str], name: str = "l2") -> str:
        uuid = self._add(L2Network(zone_uuid=zone, name=name, type="L2NoVlanNetwork",
                                   physical_interface="eth0"))
        for cluster in clusters:
            self.session.add(L2NetworkClusterRef(l2_network_uuid=uuid, cluster_uuid=cluster))
        self.session.flush()
        return uuid

    def l3(self, l2: str, name: str = "l3") -> str:
        zone = self.session.get(L2Network, l2).zone_uuid
        return self._add(L3Network(l2_network_uuid=l2, zone_uuid=zone, name=name))

    def ip_range(self, l3: str, start: str, end: str, cidr: str, gateway: str) -> str:
        network = IPv4Network(cidr)
        return self._add(IpRange(
            l3_network_uuid=l3, name=f"{start}-{end}", start_ip=start, end_ip=end,
            netmask=str(network.netmask), gateway=gateway, network_cidr=str(network),
            prefix_len=network.prefixlen))

    def used_ips(self, l3: str, ip_range: str, ips: list[int]) -> None:
        """Mark addresses used in bulk (no NICs), as if other allocations had taken them."""
        row = self.session.get(IpRange, ip_range)
        self.session.execute(insert(UsedIp), [
            {"uuid": new_uuid(), "ip_range_uuid": ip_range, "l3_network_uuid": l3,
             "ip": str(IPv4Address(ip)), "ip_in_long": ip, "netmask": row.netmask,
             "gateway": row.gateway, "use_for": "Test"} for ip in ips])

    def backup_storage(self, zones: list[str], name: str = "bs", *, state: str = "Enabled",
                       status: str = "Connected") -> str:
        uuid = self._add(BackupStorage(name=name, type="ImageStoreBackupStorage",
                                       url="/images", hostname="bs", state=state,
                                       status=status))
        for zone in zones:
            self.session.add(BackupStorageZoneRef(backup_storage_uuid=uuid, zone_uuid=zone))
        self.session.flush()
        return uuid

    def image(self, backup_storages: list[str], *, size: int = 10 * GiB,
              name: str = "image", status: str = "Ready") -> str:
        uuid = self._add(Image(name=name, url="http://images/i.qcow2", size=size,
                               status=status))
        for storage in backup_storages:
            self.session.add(ImageBackupStorageRef(image_uuid=uuid,
                                                   backup_storage_uuid=storage))
        self.session.flush()
        return uuid

    def vm(self, name: str = "vm", *, cpu: int = 1, memory: int = GiB,
           state: str = "Starting") -> str:
        return self._add(VmInstance(name=name, cpu_num=cpu, memory_size=memory, state=state))

    def volume(self, vm: str | None, *, size: int = 10 * GiB, type: str = "Root",
               name: str = "volume") -> str:
        uuid = self._add(Volume(name=name, vm_instance_uuid=vm, size=size, type=type))
        if vm and type == "Root":
            self.session.get(VmInstance, vm).root_volume_uuid = uuid
            self.session.flush()
        return uuid


@dataclass(frozen=True)
class Site:
    """A small eligible place for VMs: one zone, one cluster with one host, primary storage,
    one L3 network (10.0.0.2-10.0.0.254 of 10.0.0.0/24, gateway 10.0.0.1) and an image."""

    zone: str
    cluster: str
    host: str
    primary_storage: str
    l2: str
    l3: str
    ip_range: str
    backup_storage: str
    image: str


def build_site(b: Builder, *, cpu: int = 16, memory: int = 64 * GiB) -> Site:
    zone = b.zone()
    cluster = b.cluster(zone)
    host = b.host(cluster, cpu=cpu, memory=memory)
    primary_storage = b.primary_storage(zone, [cluster])
    l2 = b.l2(zone, [cluster])
    l3 = b.l3(l2)
    ip_range = b.ip_range(l3, "10.0.0.2", "10.0.0.254", "10.0.0.0/24", "10.0.0.1")
    backup_storage = b.backup_storage([zone])
    image = b.image([backup_storage])
    return Site(zone, cluster, host, primary_storage, l2, l3, ip_range, backup_storage, image)


@contextmanager
def building(db: Database) -> Iterator[Builder]:
    with db.session() as session:
        yield Builder(session)
