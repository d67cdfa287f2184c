"""The steps of the VM lifecycle chains (``statemachines/chains/*-vm.json``).

Each step does one piece of work in one short transaction and records in the context what
later steps need. Every rollback is idempotent and safe for a run that failed half way or
never started: it undoes from what the database says and from ids the context was given up
front (``vms.prepare_create`` picks the volumes' uuids), never from what the failed run
would have recorded.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from chalicelib.agents.protocol import (
    VM_CREATE,
    VM_DESTROY,
    VM_REBOOT,
    VM_START,
    VM_STOP,
    VOLUMES_CREATE,
    VOLUMES_DELETE,
)
from chalicelib.compute.allocation import (
    VMS,
    VOLUMES,
    ChosenStorage,
    HostRequest,
    Move,
    allocate_host,
    forget_loaded,
    move_vm,
    place_volumes,
    release_host,
    release_primary_storage,
)
from chalicelib.compute.vms import HOSTNAME_TAG
from chalicelib.db.models import (
    Image,
    L2Network,
    L3Network,
    PrimaryStorage,
    SystemTag,
    VmInstance,
    VmNic,
    Volume,
)
from chalicelib.errors import InvalidState, NotFound
from chalicelib.flows import AgentCommandRequest, FlowContext, StepEnv, agent_step, step
from chalicelib.network.dhcp import dhcp_spec
from chalicelib.network.ip_allocation import add_nic, release_nic
from chalicelib.storage.backup_selection import select_backup_storage


def _volume_specs(ctx: FlowContext) -> list[dict[str, Any]]:
    """The VM's volumes as the flow was given them: the root one first."""
    return [{**ctx["rootVolume"], "type": "Root", "deviceId": 0}] + [
        {**disk, "type": "Data", "deviceId": n} for n, disk in enumerate(ctx["dataVolumes"], 1)]


def _volume_uuids(ctx: FlowContext) -> list[str]:
    return [spec["uuid"] for spec in _volume_specs(ctx)]


_ZONE_OF_L3 = select(L3Network.__table__.c.zone_uuid).where(
    L3Network.__table__.c.uuid == bindparam("l3"))


def _zone_of(db: Session, ctx: FlowContext) -> str:
    if ctx.get("zoneUuid"):
        return ctx["zoneUuid"]
    return db.scalar(_ZONE_OF_L3, {"l3": ctx["l3NetworkUuids"][0]})


def bridge_name(physical_interface: str, vlan: int | None) -> str:
    """The Linux bridge an L2 network is on a host: ``br_<interface>[_<vlan>]`` (ZStack's)."""
    interface = physical_interface.replace(".", "_")
    return f"br_{interface}_{vlan}" if vlan is not None else f"br_{interface}"


def volume_path(storage: PrimaryStorage | ChosenStorage, vm_uuid: str, volume_uuid: str) -> str:
    return f"{storage.mount_path.rstrip('/')}/vms/{vm_uuid}/{volume_uuid}.qcow2"


def image_cache_path(mount_path: str, image_uuid: str, image_format: str) -> str:
    return f"{mount_path.rstrip('/')}/imagecache/{image_uuid}.{image_format}"


# --- create ---------------------------------------------------------------------------------


@step("vm.select-backup-storage")
class SelectBackupStorage:
    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            storage = select_backup_storage(db, ctx["imageUuid"], _zone_of(db, ctx))
            ctx["backupStorageUuid"] = storage.uuid

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Choosing changed nothing."""


@step("vm.allocate-host")
class AllocateHost:
    """A Connected, Enabled host with the CPU and memory free, in a cluster that has the VM's
    L2 networks and room on a primary storage for its volumes; its capacity is reserved."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            host = allocate_host(db, ctx["vmUuid"], HostRequest(
                l3_network_uuids=ctx["l3NetworkUuids"],
                disk_size=sum(spec["size"] for spec in _volume_specs(ctx)),
                zone_uuid=ctx.get("zoneUuid"), cluster_uuid=ctx.get("clusterUuid"),
                host_uuid=ctx.get("requestedHostUuid")))
            ctx["hostUuid"] = host.uuid

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            release_host(db, ctx["vmUuid"])


_VOLUME_OWNER = select(VMS.c.name, VMS.c.account_uuid, VMS.c.image_uuid).where(
    VMS.c.uuid == bindparam("vm"))
_EXISTING_VOLUMES = select(VOLUMES.c.uuid).where(
    VOLUMES.c.uuid.in_(bindparam("volumes", expanding=True)))
_SET_INSTALL_PATH = update(VOLUMES).where(VOLUMES.c.uuid == bindparam("volume")).values(
    install_path=bindparam("path"))
_SET_ROOT_VOLUME = update(VMS).where(VMS.c.uuid == bindparam("vm")).values(
    root_volume_uuid=bindparam("root"))


@step("vm.allocate-volumes")
class AllocateVolumes:
    """The root volume (the image's size) and a data volume per disk offering, placed on one
    primary storage of the host's cluster, whose capacity they now hold."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        uuids = _volume_uuids(ctx)
        with env.session() as db:
            vm = db.execute(_VOLUME_OWNER, {"vm": ctx["vmUuid"]}).one()
            existing = set(db.scalars(_EXISTING_VOLUMES, {"volumes": uuids}))
            new = [{"uuid": spec["uuid"], "name": f"{spec['type'].lower()}-volume-of-{vm.name}",
                    "account_uuid": vm.account_uuid, "vm_instance_uuid": ctx["vmUuid"],
                    "type": spec["type"], "size": spec["size"], "device_id": spec["deviceId"],
                    "disk_offering_uuid": spec.get("diskOfferingUuid"),
                    "root_image_uuid": vm.image_uuid if spec["type"] == "Root" else None}
                   for spec in _volume_specs(ctx) if spec["uuid"] not in existing]
            if new:
                db.execute(insert(VOLUMES), new)
            storage = place_volumes(db, uuids, ctx["hostUuid"])
            db.execute(_SET_INSTALL_PATH, [
                {"volume": uuid, "path": volume_path(storage, ctx["vmUuid"], uuid)}
                for uuid in uuids])
            db.execute(_SET_ROOT_VOLUME, {"vm": ctx["vmUuid"], "root": uuids[0]})
            forget_loaded(db, VmInstance, ctx["vmUuid"])
            ctx["primaryStorageUuid"] = storage.uuid

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            _release_volumes(db, ctx["vmUuid"], _volume_uuids(ctx))


def _release_volumes(db: Session, vm_uuid: str, uuids: list[str]) -> None:
    """Give back the volumes' storage, then delete them (idempotent)."""
    release_primary_storage(db, uuids)
    db.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid)
               .values(root_volume_uuid=None))
    db.execute(delete(Volume).where(Volume.uuid.in_(uuids)))


@step("vm.allocate-nics")
class AllocateNics:
    """A NIC on each L3 network, in the order given, each with a free IP and a unique MAC."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            for device_id, l3_uuid in enumerate(ctx["l3NetworkUuids"]):
                add_nic(db, ctx["vmUuid"], l3_uuid, device_id=device_id)

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            _release_nics(db, ctx["vmUuid"])


def _release_nics(db: Session, vm_uuid: str) -> None:
    for nic_uuid in db.scalars(select(VmNic.uuid).where(VmNic.vm_instance_uuid == vm_uuid)):
        release_nic(db, nic_uuid)


def _volumes_on_host(db: Session, vm_uuid: str) -> list[Volume]:
    return list(db.scalars(select(Volume).where(Volume.vm_instance_uuid == vm_uuid,
                                                Volume.install_path.is_not(None))
                           .order_by(Volume.device_id)))


@agent_step("vm.instantiate-volumes")
class InstantiateVolumes:
    """The volume files on the host; the root volume is an overlay of the image, which the
    host downloads once into its primary storage's image cache."""

    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        with env.session() as db:
            volumes = [_volume_request(v) for v in db.execute(_VOLUMES_TO_MAKE,
                                                               {"vm": ctx["vmUuid"]})]
        return AgentCommandRequest(ctx["hostUuid"], VOLUMES_CREATE, {"volumes": volumes})

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        _delete_volume_files(ctx, env)


_IMAGES, _STORAGES = Image.__table__, PrimaryStorage.__table__
_VOLUMES_TO_MAKE = select(
    VOLUMES.c.install_path, VOLUMES.c.size, VOLUMES.c.format, _IMAGES.c.uuid.label("image_uuid"),
    _IMAGES.c.url.label("image_url"), _IMAGES.c.format.label("image_format"),
    _IMAGES.c.media_type, _STORAGES.c.mount_path,
).outerjoin(_IMAGES, _IMAGES.c.uuid == VOLUMES.c.root_image_uuid).outerjoin(
    _STORAGES, _STORAGES.c.uuid == VOLUMES.c.primary_storage_uuid,
).where(VOLUMES.c.vm_instance_uuid == bindparam("vm"), VOLUMES.c.install_path.is_not(None)
        ).order_by(VOLUMES.c.device_id)


def _volume_request(volume: Row[Any]) -> dict[str, Any]:
    """``volume``: a row of ``_VOLUMES_TO_MAKE``."""
    request: dict[str, Any] = {"path": volume.install_path, "size": volume.size,
                               "format": volume.format}
    if volume.media_type == "RootVolumeTemplate":
        request["image"] = {
            "uuid": volume.image_uuid, "url": volume.image_url, "format": volume.image_format,
            "cachePath": image_cache_path(volume.mount_path, volume.image_uuid,
                                          volume.image_format)}
    return request


def _delete_volume_files(ctx: FlowContext, env: StepEnv) -> None:
    """Ask the host to delete the VM's volume files (not waited for: the agent deletes what
    exists and ignores what does not; its host runs commands in the order they come)."""
    with env.session() as db:
        host_uuid = _host_of(db, ctx)
        request = _volume_files(db, ctx["vmUuid"], host_uuid)
    if request.args["paths"] and host_uuid:
        env.agents.send(request)


def _host_of(db: Session, ctx: FlowContext) -> str | None:
    """The VM's host: from the context, or, for a rollback after a crash (which only has the
    context the flow started with), from the VM's row."""
    if ctx.get("hostUuid"):
        return ctx["hostUuid"]
    vm = db.get(VmInstance, ctx["vmUuid"])
    return (vm.host_uuid or vm.last_host_uuid) if vm is not None else None


def _volume_files(db: Session, vm_uuid: str, host_uuid: str | None) -> AgentCommandRequest:
    """Delete the VM's volume files and the VM's folder they were in."""
    paths = [v.install_path for v in _volumes_on_host(db, vm_uuid)]
    args: dict[str, Any] = {"paths": paths}
    if paths:
        args["directory"] = paths[0].rsplit("/", 1)[0]
    return AgentCommandRequest(host_uuid or "", VOLUMES_DELETE, args)


_NIC_ROWS, _L3S, _L2S = VmNic.__table__, L3Network.__table__, L2Network.__table__
_NICS = select(
    _NIC_ROWS.c.uuid, _NIC_ROWS.c.mac, _NIC_ROWS.c.device_id, _NIC_ROWS.c.ip,
    _NIC_ROWS.c.netmask, _NIC_ROWS.c.gateway, _L3S.c.uuid.label("l3_uuid"), _L3S.c.dns_domain,
    _L2S.c.physical_interface, _L2S.c.vlan, _L2S.c.type.label("l2_type"),
).join(_L3S, _L3S.c.uuid == _NIC_ROWS.c.l3_network_uuid).join(
    _L2S, _L2S.c.uuid == _L3S.c.l2_network_uuid,
).where(_NIC_ROWS.c.vm_instance_uuid == bindparam("vm")).order_by(_NIC_ROWS.c.device_id)
_VOLUME_FILES = select(
    VOLUMES.c.uuid, VOLUMES.c.install_path, VOLUMES.c.format, VOLUMES.c.device_id,
).where(VOLUMES.c.vm_instance_uuid == bindparam("vm"), VOLUMES.c.install_path.is_not(None)
        ).order_by(VOLUMES.c.device_id)
_SYSTEM_TAGS = select(SystemTag.__table__.c.tag).where(
    SystemTag.__table__.c.resource_uuid == bindparam("vm"))


_VM_SHAPE = select(VMS.c.uuid, VMS.c.name, VMS.c.cpu_num, VMS.c.memory_size).where(
    VMS.c.uuid == bindparam("vm"))


def vm_spec(db: Session, vm_uuid: str) -> dict[str, Any]:
    """The VM as the agent's ``vm.create`` (and ``vm.start``) reads it; a NIC on a flat
    network also names the DHCP server that hands it its address on the host."""
    vm = db.execute(_VM_SHAPE, {"vm": vm_uuid}).first()
    if vm is None:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    hostname = _hostname_of(db, vm.uuid)
    spec = {"uuid": vm.uuid, "name": vm.name, "cpuNum": vm.cpu_num,
            "memorySize": vm.memory_size,
            "volumes": [{"uuid": v.uuid, "path": v.install_path, "format": v.format,
                         "deviceId": v.device_id}
                        for v in db.execute(_VOLUME_FILES, {"vm": vm.uuid})],
            "nics": [_nic_spec(db, nic, hostname)
                     for nic in db.execute(_NICS, {"vm": vm.uuid})]}
    if hostname:
        spec["hostname"] = hostname
    return spec


def _nic_spec(db: Session, nic: Row[Any], hostname: str | None) -> dict[str, Any]:
    """``nic``: a row of ``_NICS``."""
    spec = {"uuid": nic.uuid, "mac": nic.mac,
            "bridge": bridge_name(nic.physical_interface, nic.vlan),
            "physicalInterface": nic.physical_interface, "vlan": nic.vlan,
            "deviceId": nic.device_id, "ip": nic.ip}
    dhcp = dhcp_spec(db, l2_type=nic.l2_type, l3_network_uuid=nic.l3_uuid,
                     dns_domain=nic.dns_domain, ip=nic.ip, netmask=nic.netmask,
                     gateway=nic.gateway, hostname=hostname if nic.device_id == 0 else None)
    if dhcp is not None:
        spec["dhcp"] = dhcp
    return spec


def _hostname_of(db: Session, vm_uuid: str) -> str | None:
    for tag in db.scalars(_SYSTEM_TAGS, {"vm": vm_uuid}):
        found = HOSTNAME_TAG.regex.match(tag)
        if found:
            return found["hostname"]
    return None


@agent_step("vm.create-on-hypervisor")
class CreateOnHypervisor:
    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        with env.session() as db:
            return AgentCommandRequest(ctx["hostUuid"], VM_CREATE,
                                       vm_spec(db, ctx["vmUuid"]))

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        _destroy_on_host(ctx, env)


def _destroy_on_host(ctx: FlowContext, env: StepEnv) -> None:
    """Not waited for: destroying a VM the hypervisor does not have is a no-op there."""
    with env.session() as db:
        host_uuid = _host_of(db, ctx)
    if host_uuid:
        env.agents.send(AgentCommandRequest(host_uuid, VM_DESTROY, {"uuid": ctx["vmUuid"]}))


# --- start, stop, reboot, destroy, expunge ----------------------------------------------------


def _on_host(ctx: FlowContext, name: str, args: dict[str, Any] | None = None
             ) -> AgentCommandRequest:
    if not ctx.get("hostUuid"):
        raise InvalidState(f"VM {ctx['vmUuid']} has no host to run {name} on")
    return AgentCommandRequest(ctx["hostUuid"], name, {"uuid": ctx["vmUuid"], **(args or {})})


@step("vm.reserve-host-capacity")
class ReserveHostCapacity:
    """A stopped VM starts where its volumes are: its last host, if it has the room."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            host = allocate_host(db, ctx["vmUuid"], HostRequest(
                l3_network_uuids=ctx["l3NetworkUuids"], host_uuid=ctx.get("hostUuid")))
            ctx["hostUuid"] = host.uuid

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            release_host(db, ctx["vmUuid"])


@agent_step("vm.start-on-hypervisor")
class StartOnHypervisor:
    """With the whole spec, as create sends it: a host that lost the domain defines it again
    (and its bridges), so the VM starts wherever its volumes are."""

    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        with env.session() as db:
            spec = vm_spec(db, ctx["vmUuid"])
        return _on_host(ctx, VM_START, spec)

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        if ctx.get("hostUuid"):  # it may have started after all; the VM settles Stopped
            env.agents.send(_on_host(ctx, VM_STOP, {"force": True}))


@agent_step("vm.stop-on-hypervisor")
class StopOnHypervisor:
    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        return _on_host(ctx, VM_STOP, {"force": bool(ctx.get("force"))})

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """A VM that stopped cannot be un-stopped; one that did not is still running, as the
        VM's restored state says. The next report corrects either."""


@agent_step("vm.reboot-on-hypervisor")
class RebootOnHypervisor:
    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        return _on_host(ctx, VM_REBOOT)

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """A reboot leaves nothing to undo."""


@agent_step("vm.destroy-on-hypervisor")
class DestroyOnHypervisor:
    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        return _on_host(ctx, VM_DESTROY)

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """A destroyed domain is not brought back; the VM's restored state is corrected by
        the host's next report."""


@step("vm.release-host-capacity")
class ReleaseHostCapacity:
    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            release_host(db, ctx["vmUuid"])

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """The VM is on its host again (holding its capacity, if its state holds any), so
        that the state the failed operation restores (Running) has a host to run on."""
        if not ctx.get("hostUuid"):
            return
        with env.session() as db:
            vm = db.get(VmInstance, ctx["vmUuid"], populate_existing=True)
            if vm is not None and vm.host_uuid is None:
                moved = move_vm(db, vm, state=vm.state, host_uuid=ctx["hostUuid"])
                if moved is not Move.DONE:
                    raise InvalidState(f"VM {vm.uuid} cannot go back onto host "
                                       f"{ctx['hostUuid']}: {moved.value}")


@agent_step("vm.delete-volumes-on-storage")
class DeleteVolumesOnStorage:
    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        if not ctx.get("hostUuid"):
            raise InvalidState(f"VM {ctx['vmUuid']} has no host left to delete its volumes on")
        with env.session() as db:
            return _volume_files(db, ctx["vmUuid"], ctx["hostUuid"])

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Deleted files stay deleted: the VM stays Destroyed and expunging it again ends
        the work."""


@step("vm.release-nics")
class ReleaseNics:
    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            _release_nics(db, ctx["vmUuid"])

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Released IPs may be taken by now; an expunge that failed later is run again."""


@step("vm.release-volumes")
class ReleaseVolumes:
    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        with env.session() as db:
            _release_volumes(db, ctx["vmUuid"], list(db.scalars(select(Volume.uuid).where(
                Volume.vm_instance_uuid == ctx["vmUuid"]))))

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Like the NICs: an expunge that failed later is run again."""

