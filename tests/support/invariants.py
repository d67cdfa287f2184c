"""The leak checker: what must hold between any two operations, however they ended.

``find_leaks`` returns one sentence per broken rule, naming the resource; ``assert_no_leaks``
fails with all of them. Rules:

- a host's available CPU and memory = its total less what its VMs in holding states hold;
- a primary storage's available capacity = its total less the sizes of the volumes on it;
- a UsedIp for a VmNic is used by exactly one NIC, of its L3 network and with its address;
  one for anything else (an L3 network's DHCP server) by none; every NIC has its IP;
- a volume of a VM belongs to a VM that exists and is not Expunged; a root volume belongs to a
  VM; every VM past creation (not Created or Error) has its root volume;
- a VM that runs (Running, Stopping, Rebooting, Migrating, Paused) is on a host.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chalicelib.compute.capacity import HOLDING_STATES
from chalicelib.db.models import Host, PrimaryStorage, UsedIp, VmInstance, VmNic, Volume

# A VM in these states may not have a root volume (yet, or after a failed create's rollback).
WITHOUT_ROOT_VOLUME = ("Created", "Error", "Expunged")


def _label(resource) -> str:
    return f"{resource.__resource__} {resource.name} ({resource.uuid})"


def host_capacity_leaks(session: Session) -> list[str]:
    held = {row.host_uuid: row for row in session.execute(
        select(VmInstance.host_uuid, func.count().label("vms"),
               func.sum(VmInstance.cpu_num).label("cpu"),
               func.sum(VmInstance.memory_size).label("memory"))
        .where(VmInstance.host_uuid.is_not(None), VmInstance.state.in_(HOLDING_STATES))
        .group_by(VmInstance.host_uuid))}
    leaks = []
    for host in session.scalars(select(Host).execution_options(populate_existing=True)):
        row = held.get(host.uuid)
        vms, cpu, memory = (row.vms, int(row.cpu), int(row.memory)) if row else (0, 0, 0)
        for what, available, total, used in (
            ("CPU", host.available_cpu_capacity, host.total_cpu_capacity, cpu),
            ("memory", host.available_memory_capacity, host.total_memory_capacity, memory),
        ):
            if available != total - used:
                leaks.append(f"{_label(host)}: available {what} {available} != total {total} "
                             f"- {used} held by {vms} VMs = {total - used}")
    return leaks


def primary_storage_leaks(session: Session) -> list[str]:
    held = dict(session.execute(
        select(Volume.primary_storage_uuid, func.sum(Volume.size))
        .where(Volume.primary_storage_uuid.is_not(None))
        .group_by(Volume.primary_storage_uuid)).all())
    leaks = []
    for storage in session.scalars(select(PrimaryStorage)
                                   .execution_options(populate_existing=True)):
        used = int(held.get(storage.uuid) or 0)
        expected = storage.total_capacity - used
        if storage.available_capacity != expected:
            leaks.append(f"{_label(storage)}: available capacity {storage.available_capacity} "
                         f"!= total {storage.total_capacity} - {used} held by its volumes = "
                         f"{expected}")
    return leaks


def ip_leaks(session: Session) -> list[str]:
    nics_by_ip: dict[str, list[VmNic]] = {}
    leaks = []
    nics = list(session.scalars(select(VmNic).execution_options(populate_existing=True)))
    for nic in nics:
        if nic.used_ip_uuid is None:
            leaks.append(f"{_label(nic)} of VM {nic.vm_instance_uuid} has no IP")
        else:
            nics_by_ip.setdefault(nic.used_ip_uuid, []).append(nic)
    used_ips = {ip.uuid: ip for ip in session.scalars(
        select(UsedIp).execution_options(populate_existing=True))}
    for ip in used_ips.values():
        users = nics_by_ip.get(ip.uuid, [])
        if ip.use_for == "VmNic" and len(users) != 1:
            leaks.append(f"UsedIp {ip.ip} ({ip.uuid}) of L3 network {ip.l3_network_uuid} is "
                         f"used by {len(users)} NICs, not 1")
        elif ip.use_for != "VmNic" and users:
            leaks.append(f"UsedIp {ip.ip} ({ip.uuid}) of L3 network {ip.l3_network_uuid} is "
                         f"for {ip.use_for}, yet used by {len(users)} NICs")
    for used_ip_uuid, users in nics_by_ip.items():
        ip = used_ips.get(used_ip_uuid)
        for nic in users:
            if ip is None:
                leaks.append(f"{_label(nic)} uses UsedIp {used_ip_uuid}, which does not exist")
            elif (ip.l3_network_uuid, ip.ip) != (nic.l3_network_uuid, nic.ip):
                leaks.append(f"{_label(nic)} says {nic.ip} on L3 network "
                             f"{nic.l3_network_uuid} but its UsedIp is {ip.ip} on "
                             f"{ip.l3_network_uuid}")
    return leaks


def volume_leaks(session: Session) -> list[str]:
    vms = {vm.uuid: vm for vm in session.scalars(
        select(VmInstance).execution_options(populate_existing=True))}
    volumes = {v.uuid: v for v in session.scalars(
        select(Volume).execution_options(populate_existing=True))}
    leaks = []
    for volume in volumes.values():
        vm = vms.get(volume.vm_instance_uuid) if volume.vm_instance_uuid else None
        if volume.vm_instance_uuid and (vm is None or vm.state == "Expunged"):
            leaks.append(f"{_label(volume)} belongs to VM {volume.vm_instance_uuid}, which "
                         f"{'is Expunged' if vm else 'does not exist'}")
        if volume.type == "Root" and volume.vm_instance_uuid is None:
            leaks.append(f"root {_label(volume)} belongs to no VM")
    for vm in vms.values():
        if vm.state in WITHOUT_ROOT_VOLUME:
            continue
        root = volumes.get(vm.root_volume_uuid) if vm.root_volume_uuid else None
        if root is None or root.vm_instance_uuid != vm.uuid or root.type != "Root":
            leaks.append(f"{_label(vm)} is {vm.state} but has no root volume "
                         f"(root_volume_uuid {vm.root_volume_uuid})")
    return leaks


# States in which a VM runs (or is being stopped or rebooted) somewhere: it must say where.
ON_A_HOST = ("Running", "Stopping", "Rebooting", "Migrating", "Paused")


def hostless_vm_leaks(session: Session) -> list[str]:
    """A VM that runs but has no host holds no capacity anywhere and is never synced."""
    return [f"{_label(vm)} is {vm.state} but on no host" for vm in session.scalars(
        select(VmInstance).where(VmInstance.state.in_(ON_A_HOST),
                                 VmInstance.host_uuid.is_(None)))]


Check = Callable[[Session], list[str]]
# What must hold even while operations are in flight (a VM being created has no volume yet).
CAPACITY_CHECKS: tuple[Check, ...] = (host_capacity_leaks, primary_storage_leaks)
CHECKS: tuple[Check, ...] = (*CAPACITY_CHECKS, ip_leaks, volume_leaks, hostless_vm_leaks)


def find_leaks(session: Session, checks: tuple[Check, ...] = CHECKS) -> list[str]:
    return [leak for check in checks for leak in check(session)]


def assert_no_leaks(session: Session, checks: tuple[Check, ...] = CHECKS) -> None:
    leaks = find_leaks(session, checks)
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks)
