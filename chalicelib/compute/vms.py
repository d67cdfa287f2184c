"""VM instances: what each lifecycle operation checks and changes before and after its flow.

Each operation runs as a flow (``statemachines/chains/<op>-vm.json``; the steps live in
``vm_steps``). ``prepare_*`` runs in the job's first transaction: it refuses a call the VM's
state does not allow (409) and shows the operation's transient state; it returns the flow's
context. ``settle`` runs after the flow (or its rollbacks) and sets the final state.
"""
from __future__ import annotations

import re
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, update

from chalicelib.compute import vm_states
from chalicelib.context import Context
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
    Volume,
    Zone,
)
from chalicelib.errors import InvalidArgument, InvalidState
from chalicelib.flows.outcome import FlowEnd
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource
from chalicelib.tags import apply_tags, define_system_tag

HOSTNAME_TAG = define_system_tag("VmInstance", "hostname::{hostname}")
HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _new_uuid() -> str:
    return uuid_module.uuid4().hex


def _enabled(resource: Any, field: str) -> None:
    if resource.state != "Enabled":
        raise InvalidState(f"{resource.__resource__} {resource.name} ({resource.uuid}) is "
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


def _l3_networks(ctx: Context, uuids: list[str]) -> list[L3Network]:
    if len(set(uuids)) != len(uuids):
        raise InvalidArgument("l3NetworkUuids lists an L3 network twice; a VM has one NIC "
                              "per L3 network", details={"field": "l3NetworkUuids"})
    networks = [get_visible(ctx, L3Network, uuid, field="l3NetworkUuids") for uuid in uuids]
    for network in networks:
        _enabled(network, "l3NetworkUuids")
    return networks


def _placement(ctx: Context, zone_uuid: str | None, cluster_uuid: str | None,
               host_uuid: str | None) -> dict[str, str]:
    """The zone, cluster or host the caller pinned the VM to, checked to exist and agree."""
    pinned: dict[str, str] = {}
    if host_uuid:
        host = get_visible(ctx, Host, host_uuid, field="hostUuid")
        pinned.update(requestedHostUuid=host.uuid, clusterUuid=host.cluster_uuid,
                      zoneUuid=host.zone_uuid)
    if cluster_uuid:
        cluster = get_visible(ctx, Cluster, cluster_uuid, field="clusterUuid")
        if pinned.get("clusterUuid", cluster.uuid) != cluster.uuid:
            raise InvalidArgument(f"host {host_uuid} is not in cluster {cluster_uuid}",
                                  details={"field": "clusterUuid"})
        pinned.update(clusterUuid=cluster.uuid, zoneUuid=cluster.zone_uuid)
    if zone_uuid:
        zone = get_visible(ctx, Zone, zone_uuid, field="zoneUuid")
        if pinned.get("zoneUuid", zone.uuid) != zone.uuid:
            raise InvalidArgument(f"the cluster or host asked for is not in zone {zone_uuid}",
                                  details={"field": "zoneUuid"})
        pinned["zoneUuid"] = zone.uuid
    return pinned


@dataclass(frozen=True)
class VmCreation:
    """A create request checked against the cloud as it is: what the VM is made from."""

    name: str
    description: str | None
    offering: InstanceOffering
    image: Image
    networks: list[L3Network]
    default_l3_network_uuid: str
    disks: list[DiskOffering]
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
    offering = get_visible(ctx, InstanceOffering, instance_offering_uuid,
                           field="instanceOfferingUuid")
    _enabled(offering, "instanceOfferingUuid")
    image = get_visible(ctx, Image, image_uuid, field="imageUuid")
    if image.media_type != "RootVolumeTemplate":
        raise InvalidArgument(f"image {image.name} ({image.uuid}) is a {image.media_type}; a "
                              "VM boots from a RootVolumeTemplate", details={"field": "imageUuid"})
    networks = _l3_networks(ctx, l3_network_uuids)
    if default_l3_network_uuid and default_l3_network_uuid not in l3_network_uuids:
        raise InvalidArgument("defaultL3NetworkUuid must be one of l3NetworkUuids",
                              details={"field": "defaultL3NetworkUuid"})
    disks = [get_visible(ctx, DiskOffering, uuid, field="dataDiskOfferingUuids")
             for uuid in data_disk_offering_uuids or []]
    for disk in disks:
        _enabled(disk, "dataDiskOfferingUuids")
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


def prepare_create(ctx: Context, creation: VmCreation) -> dict[str, Any]:
    offering, image = creation.offering, creation.image
    vm = add_resource(ctx, VmInstance(
        name=creation.name, description=creation.description, image_uuid=image.uuid,
        instance_offering_uuid=offering.uuid, cpu_num=offering.cpu_num,
        cpu_speed=offering.cpu_speed, memory_size=offering.memory_size,
        allocator_strategy=offering.allocator_strategy, platform=image.platform,
        architecture=image.architecture, hypervisor_type="KVM",
        default_l3_network_uuid=creation.default_l3_network_uuid, state="Created"))
    apply_tags(ctx, vm, creation.system_tags, creation.user_tags)
    vm_uuid = vm.uuid  # read before begin() has the row read again
    vm_states.begin(ctx.session, vm_uuid, "create")
    return {
        "resourceUuid": vm_uuid, "vmUuid": vm_uuid, "imageUuid": image.uuid,
        "l3NetworkUuids": [n.uuid for n in creation.networks], **creation.pinned,
        # Made now, so a rollback of a step that failed half way knows what to remove.
        "rootVolume": {"uuid": _new_uuid(), "size": image.size},
        "dataVolumes": [{"uuid": _new_uuid(), "size": d.disk_size, "diskOfferingUuid": d.uuid}
                        for d in creation.disks],
        **({"hostname": creation.hostname} if creation.hostname else {}),
    }


_VOLUMES_READY = update(Volume.__table__).where(
    Volume.__table__.c.vm_instance_uuid == bindparam("vm")).values(status="Ready")


def settle_create(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> VmInstance | None:
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
        return ctx.session.get(VmInstance, vm_uuid, populate_existing=True)
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
    def settle(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> VmInstance | None:
        state = vm_states.finish(ctx.session, flow["vmUuid"], operation,
                                 started_from=flow["startedFrom"],
                                 succeeded=end is FlowEnd.SUCCEEDED)
        if state == vm_states.EXPUNGED:
            return None
        return ctx.session.get(VmInstance, flow["vmUuid"], populate_existing=True)
    return settle


def recover(ctx: Context, vm_uuid: str) -> VmInstance:
    """Destroyed → Stopped: its volumes and NICs were kept, so nothing else changes."""
    vm = _vm(ctx, vm_uuid)
    started_from = vm_states.begin(ctx.session, vm.uuid, "recover")
    vm_states.finish(ctx.session, vm.uuid, "recover", started_from=started_from,
                     succeeded=True)
    return ctx.session.get(VmInstance, vm.uuid, populate_existing=True)
