"""VM instances: what each lifecycle operation checks and changes before and after its flow.

Each operation runs as a flow (``statemachines/chains/<op>-vm.json``; the steps live in
``vm_steps``). ``prepare_*`` runs in the job's first transaction: it refuses a call the VM's
state does not allow (409) and shows the operation's transient state; it returns the flow's
context. ``settle`` runs after the flow (or its rollbacks) and sets the final state.
"""
from __future__ import annotations

import functools
import re
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Row, Select, bindparam, delete, insert, inspect, select, update
from sqlalchemy.orm import Session

from chalicelib.compute import vm_states
from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.db.inventory import camel, wire_value
from chalicelib.db.models import (
    Cluster,
    DiskOffering,
    Host,
    Image,
    InstanceOffering,
    L3Network,
    SystemTag,
    UserTag,
    VmInstance,
    VmNic,
    Volume,
    Zone,
)
from chalicelib.errors import InvalidArgument, InvalidState, NotFound
from chalicelib.flows.outcome import FlowEnd
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import ensure_unique_name
from chalicelib.tags import apply_tags, define_system_tag

HOSTNAME_TAG = define_system_tag("VmInstance", "hostname::{hostname}")
HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _new_uuid() -> str:
    return uuid_module.uuid4().hex


# What each check reads of a resource: its row's columns, not a loaded object (prepare runs
# in the job's transaction, which holds SQLite's writer turn: it reads only what it uses).
_OFFERING = ("uuid", "name", "state", "cpu_num", "cpu_speed", "memory_size",
             "allocator_strategy")
_IMAGE = ("uuid", "name", "media_type", "platform", "architecture", "size")
_ENABLED = ("uuid", "name", "state")
_DISK = (*_ENABLED, "disk_size")
_PLACE = ("uuid", "cluster_uuid", "zone_uuid")


@functools.cache
def _visible_row_statement(model: type[Base], columns: tuple[str, ...], admin: bool) -> Select:
    table = model.__table__
    statement = select(*(table.c[c] for c in columns)).where(table.c.uuid == bindparam("uuid"))
    if not admin:
        statement = statement.where(table.c.account_uuid == bindparam("account_uuid"))
    return statement


def _visible_row(ctx: Context, model: type[Base], uuid: str, columns: tuple[str, ...],
                 field: str) -> Row:
    """``columns`` of the resource, or NotFound whether it is missing or belongs to someone
    else (what :func:`get_visible` says)."""
    params = {"uuid": uuid}
    if not ctx.caller.is_admin:
        params["account_uuid"] = ctx.caller.account_uuid
    row = ctx.session.execute(_visible_row_statement(model, columns, ctx.caller.is_admin),
                              params).first()
    if row is None:
        raise NotFound(f"{model.__resource__} {uuid} does not exist",
                       details={"field": field, "uuid": uuid})
    return row


def _enabled(model: type[Base], resource: Row, field: str) -> None:
    if resource.state != "Enabled":
        raise InvalidState(f"{model.__resource__} {resource.name} ({resource.uuid}) is "
                           f"{resource.state}; enable it first", details={"field": field})


def _hostname(system_tags: list[str]) -> str | None:
    for tag in system_tags:
        found = HOSTNAME_TAG.regex.match(tag)
        if found:
            name = found["hostname"]
            if not HOSTNAME.match(name):
                raise InvalidArgument(
                    f"hostname {name!r} is not a valid host name (letters, digits and '-', "
                    "at most 63, not starting or ending with '-')",
                    details={"field": "systemTags"})
            return name
    return None


def _l3_networks(ctx: Context, uuids: list[str]) -> list[Row]:
    if len(set(uuids)) != len(uuids):
        raise InvalidArgument("l3NetworkUuids lists an L3 network twice; a VM has one NIC "
                              "per L3 network", details={"field": "l3NetworkUuids"})
    networks = [_visible_row(ctx, L3Network, uuid, _ENABLED, "l3NetworkUuids")
                for uuid in uuids]
    for network in networks:
        _enabled(L3Network, network, "l3NetworkUuids")
    return networks


def _placement(ctx: Context, zone_uuid: str | None, cluster_uuid: str | None,
               host_uuid: str | None) -> dict[str, str]:
    """The zone, cluster or host the caller pinned the VM to, checked to exist and agree."""
    pinned: dict[str, str] = {}
    if host_uuid:
        host = _visible_row(ctx, Host, host_uuid, _PLACE, "hostUuid")
        pinned.update(requestedHostUuid=host.uuid, clusterUuid=host.cluster_uuid,
                      zoneUuid=host.zone_uuid)
    if cluster_uuid:
        cluster = _visible_row(ctx, Cluster, cluster_uuid, ("uuid", "zone_uuid"),
                               "clusterUuid")
        if pinned.get("clusterUuid", cluster.uuid) != cluster.uuid:
            raise InvalidArgument(f"host {host_uuid} is not in cluster {cluster_uuid}",
                                  details={"field": "clusterUuid"})
        pinned.update(clusterUuid=cluster.uuid, zoneUuid=cluster.zone_uuid)
    if zone_uuid:
        zone = _visible_row(ctx, Zone, zone_uuid, ("uuid",), "zoneUuid")
        if pinned.get("zoneUuid", zone.uuid) != zone.uuid:
            raise InvalidArgument(f"the cluster or host asked for is not in zone {zone_uuid}",
                                  details={"field": "zoneUuid"})
        pinned["zoneUuid"] = zone.uuid
    return pinned


@dataclass(frozen=True)
class VmCreation:
    """A create request checked against the cloud as it is: what the VM is made from (the
    rows' columns the checks and the VM need)."""

    name: str
    description: str | None
    offering: Row
    image: Row
    networks: list[Row]
    default_l3_network_uuid: str
    disks: list[Row]
    pinned: dict[str, str]
    hostname: str | None
    system_tags: list[str]
    user_tags: list[str]


def check_create(ctx: Context, *, name: str, description: str | None,
                 instance_offering_uuid: str, image_uuid: str, l3_network_uuids: list[str],
                 default_l3_network_uuid: str | None = None, zone_uuid: str | None = None,
                 cluster_uuid: str | None = None, host_uuid: str | None = None,
                 data_disk_offering_uuids: list[str] | None = None,
                 system_tags: list[str] | None = None,
                 user_tags: list[str] | None = None) -> VmCreation:
    """Refuse a create that cannot be made (400, 404, 409); changes nothing."""
    offering = _visible_row(ctx, InstanceOffering, instance_offering_uuid, _OFFERING,
                            "instanceOfferingUuid")
    _enabled(InstanceOffering, offering, "instanceOfferingUuid")
    image = _visible_row(ctx, Image, image_uuid, _IMAGE, "imageUuid")
    if image.media_type != "RootVolumeTemplate":
        raise InvalidArgument(f"image {image.name} ({image.uuid}) is a {image.media_type}; a "
                              "VM boots from a RootVolumeTemplate", details={"field": "imageUuid"})
    networks = _l3_networks(ctx, l3_network_uuids)
    if default_l3_network_uuid and default_l3_network_uuid not in l3_network_uuids:
        raise InvalidArgument("defaultL3NetworkUuid must be one of l3NetworkUuids",
                              details={"field": "defaultL3NetworkUuid"})
    disks = [_visible_row(ctx, DiskOffering, uuid, _DISK, "dataDiskOfferingUuids")
             for uuid in data_disk_offering_uuids or []]
    for disk in disks:
        _enabled(DiskOffering, disk, "dataDiskOfferingUuids")
    return VmCreation(
        name=name, description=description, offering=offering, image=image,
        networks=networks, default_l3_network_uuid=default_l3_network_uuid or networks[0].uuid,
        disks=disks, pinned=_placement(ctx, zone_uuid, cluster_uuid, host_uuid),
        hostname=_hostname(system_tags or []), system_tags=system_tags or [],
        user_tags=user_tags or [])


def check_tags(ctx: Context, creation: VmCreation) -> None:
    """Refuse system tags no plugin defined (400). Tags are checked by applying them, here
    to a VM never added: the caller rolls back what this put in the session."""
    apply_tags(ctx, VmInstance(uuid=_new_uuid()), creation.system_tags, creation.user_tags)


VMS = VmInstance.__table__
NICS = VmNic.__table__
# Built once; the columns an insert leaves out take their defaults (dates, type) or NULL.
_INSERT_VM = insert(VMS)


def prepare_create(ctx: Context, creation: VmCreation) -> dict[str, Any]:
    """Insert the VM, owned by the caller, already in the create operation's transient state
    (:func:`vm_states.begin_new`), with its tags; the flow's context."""
    offering, image = creation.offering, creation.image
    vm_uuid = _new_uuid()
    row = {
        "uuid": vm_uuid, "name": creation.name, "description": creation.description,
        "account_uuid": ctx.caller.account_uuid, "image_uuid": image.uuid,
        "instance_offering_uuid": offering.uuid, "cpu_num": offering.cpu_num,
        "cpu_speed": offering.cpu_speed, "memory_size": offering.memory_size,
        "allocator_strategy": offering.allocator_strategy, "platform": image.platform,
        "architecture": image.architecture, "hypervisor_type": "KVM",
        "default_l3_network_uuid": creation.default_l3_network_uuid}
    # What add_resource checks (nothing while VM names may repeat), for a row it does not add.
    ensure_unique_name(ctx, VmInstance, creation.name, row)
    row["state"] = vm_states.begin_new(ctx.session, vm_uuid, "create")
    ctx.session.execute(_INSERT_VM, row)
    apply_tags(ctx, VmInstance(uuid=vm_uuid), creation.system_tags, creation.user_tags)
    return {
        "resourceUuid": vm_uuid, "vmUuid": vm_uuid, "imageUuid": image.uuid,
        "l3NetworkUuids": [n.uuid for n in creation.networks], **creation.pinned,
        # Made now, so a rollback of a step that failed half way knows what to remove.
        "rootVolume": {"uuid": _new_uuid(), "size": image.size},
        "dataVolumes": [{"uuid": _new_uuid(), "size": d.disk_size, "diskOfferingUuid": d.uuid}
                        for d in creation.disks],
        **({"hostname": creation.hostname} if creation.hostname else {}),
    }


def _inventory_columns(model: type[Base]) -> tuple[tuple[str, ...], tuple[Column, ...]]:
    """The wire keys and columns of what ``to_inventory`` shows of ``model``, in its order."""
    shown = [(camel(attr.key), attr.columns[0]) for attr in inspect(model).column_attrs
             if camel(attr.key) not in model.__hidden_fields__]
    return tuple(key for key, _ in shown), tuple(column for _, column in shown)


_VM_KEYS, _VM_COLUMNS = _inventory_columns(VmInstance)
_NIC_KEYS, _NIC_COLUMNS = _inventory_columns(VmNic)
_VM_INVENTORY = (
    select(*_VM_COLUMNS, *_NIC_COLUMNS, NICS.c.uuid.label("nic"))
    .select_from(VMS.outerjoin(NICS, NICS.c.vm_instance_uuid == VMS.c.uuid))
    .where(VMS.c.uuid == bindparam("vm")).order_by(NICS.c.device_id))


def _wire(keys: tuple[str, ...], values: Any) -> dict[str, Any]:
    return dict(zip(keys, map(wire_value, values), strict=True))


def vm_inventory(session: Session, vm_uuid: str) -> dict[str, Any]:
    """The VM as the API shows it — ``to_inventory`` of the VmInstance, whose only extra is
    its NICs in ``vmNics`` — from one query, with no objects loaded."""
    rows = session.execute(_VM_INVENTORY, {"vm": vm_uuid}).all()
    if not rows:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    vm_end, nic_end = len(_VM_KEYS), len(_VM_KEYS) + len(_NIC_KEYS)
    inventory = _wire(_VM_KEYS, rows[0][:vm_end])
    inventory["vmNics"] = [_wire(_NIC_KEYS, row[vm_end:nic_end]) for row in rows
                           if row.nic is not None]
    return inventory


_VOLUMES_READY = update(Volume.__table__).where(
    Volume.__table__.c.vm_instance_uuid == bindparam("vm")).values(status="Ready")


def settle_create(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> dict[str, Any] | None:
    """Running, with its volumes Ready; or, after the flow's rollbacks released everything
    it held, gone: a VM that could not be created leaves no record behind. If a rollback
    failed, the VM stays, in Error, holding what could not be released, for an operator to
    see and to destroy and expunge."""
    vm_uuid = flow["vmUuid"]
    if end is FlowEnd.ROLLBACK_FAILED:
        vm_states.finish(ctx.session, vm_uuid, "create", started_from="Created",
                         succeeded=False)
        return None
    if end is FlowEnd.SUCCEEDED:
        vm_states.finish(ctx.session, vm_uuid, "create", started_from="Created",
                         succeeded=True)
        ctx.session.execute(_VOLUMES_READY, {"vm": vm_uuid})
        return vm_inventory(ctx.session, vm_uuid)
    vm = ctx.session.get(VmInstance, vm_uuid)
    if vm is not None:
        for tag_model in (SystemTag, UserTag):
            ctx.session.execute(delete(tag_model).where(tag_model.resource_uuid == vm_uuid))
        ctx.session.delete(vm)
    return None


def _vm(ctx: Context, vm_uuid: str) -> VmInstance:
    return get_visible(ctx, VmInstance, vm_uuid)


def preparer(operation: str):
    """``prepare`` of a lifecycle operation on an existing VM (start, stop, ...)."""
    def prepare(ctx: Context, vm_uuid: str) -> dict[str, Any]:
        vm = _vm(ctx, vm_uuid)
        started_from = vm_states.begin(ctx.session, vm.uuid, operation)
        ctx.session.refresh(vm)
        return {"resourceUuid": vm.uuid, "vmUuid": vm.uuid, "startedFrom": started_from,
                "hostUuid": vm.host_uuid or vm.last_host_uuid,
                "l3NetworkUuids": [nic.l3_network_uuid for nic in vm.vm_nics]}
    return prepare


def settler(operation: str):
    def settle(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> dict[str, Any] | None:
        state = vm_states.finish(ctx.session, flow["vmUuid"], operation,
                                 started_from=flow["startedFrom"],
                                 succeeded=end is FlowEnd.SUCCEEDED)
        if state == vm_states.EXPUNGED:
            return None
        return vm_inventory(ctx.session, flow["vmUuid"])
    return settle


def recover(ctx: Context, vm_uuid: str) -> dict[str, Any]:
    """Destroyed → Stopped: its volumes and NICs were kept, so nothing else changes."""
    vm = _vm(ctx, vm_uuid)
    started_from = vm_states.begin(ctx.session, vm.uuid, "recover")
    vm_states.finish(ctx.session, vm.uuid, "recover", started_from=started_from,
                     succeeded=True)
    return vm_inventory(ctx.session, vm.uuid)
