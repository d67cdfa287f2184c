"""VM instances: create, start, stop, reboot, destroy, recover, expunge; each but recover a
flow, each on the VM's own operation queue (``vm:<uuid>``)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chalicelib.api.crud import UuidRequest, resource_operations
from chalicelib.api.operation import FlowBinding, Operation
from chalicelib.api.request import CreateRequest, Description, Name, Uuid
from chalicelib.compute import vms
from chalicelib.context import Context
from chalicelib.db.models import VmInstance

TAG = "vm"
PATH = "/v1/vm-instances"
ITEM = f"{PATH}/{{uuid}}"


class CreateVmInstanceRequest(CreateRequest):
    name: Name
    description: Description | None = None
    instance_offering_uuid: Uuid
    image_uuid: Uuid
    l3_network_uuids: Annotated[list[Uuid], Field(min_length=1, max_length=16)]
    default_l3_network_uuid: Uuid | None = None
    zone_uuid: Uuid | None = None
    cluster_uuid: Uuid | None = None
    host_uuid: Uuid | None = None
    data_disk_offering_uuids: Annotated[list[Uuid], Field(max_length=24)] = Field(
        default_factory=list)


class StopVmInstanceRequest(UuidRequest):
    type: Literal["grace", "cold"] = Field(
        "grace", description="grace: ask the guest to shut down; cold: power it off")


def _check_create(ctx: Context, r: CreateVmInstanceRequest) -> vms.VmCreation:
    return vms.check_create(ctx, **r.fields(), system_tags=r.system_tags,
                            user_tags=r.user_tags)


def _validate_create(ctx: Context, r: CreateVmInstanceRequest) -> None:
    vms.check_tags(ctx, _check_create(ctx, r))


def _prepare_create(ctx: Context, r: CreateVmInstanceRequest) -> dict[str, Any]:
    return vms.prepare_create(ctx, _check_create(ctx, r))


def _prepare_stop(ctx: Context, r: StopVmInstanceRequest) -> dict[str, Any]:
    return {**vms.preparer("stop")(ctx, r.uuid), "force": r.type == "cold"}


def _lifecycle(name: str, method: str, path: str, operation: str, summary: str,
               request: type[UuidRequest] = UuidRequest, prepare=None) -> Operation:
    prepare = prepare or (lambda ctx, r: vms.preparer(operation)(ctx, r.uuid))
    binding = FlowBinding(f"{operation}-vm", prepare, vms.settler(operation))
    return Operation(name, method, path, request, prepare, summary, asynchronous=True,
                     resource="VmInstance", sync_on=("vm", "uuid"), flow=binding, tags=(TAG,))


OPERATIONS = [
    Operation("CreateVmInstance", "POST", PATH, CreateVmInstanceRequest, _prepare_create,
              "Create a VM from an image and an instance offering, with a NIC on each L3 "
              "network, and start it", asynchronous=True, resource="VmInstance",
              validate=_validate_create,
              flow=FlowBinding("create-vm", _prepare_create, vms.settle_create), tags=(TAG,)),
    *[op for op in resource_operations(VmInstance, PATH, tag=TAG, sync_kind="vm")
      if not op.name.startswith("Delete")],
    _lifecycle("StartVmInstance", "PUT", f"{ITEM}/actions/start", "start",
               "Start a stopped VM on its host"),
    _lifecycle("StopVmInstance", "PUT", f"{ITEM}/actions/stop", "stop",
               "Stop a running VM (grace: the guest shuts down; cold: powered off)",
               StopVmInstanceRequest, _prepare_stop),
    _lifecycle("RebootVmInstance", "PUT", f"{ITEM}/actions/reboot", "reboot",
               "Reboot a running VM"),
    _lifecycle("DestroyVmInstance", "DELETE", ITEM, "destroy",
               "Destroy a VM: it stops running and frees its host; its volumes and IPs are "
               "kept until it is expunged (RecoverVmInstance brings it back)"),
    Operation("RecoverVmInstance", "PUT", f"{ITEM}/actions/recover", UuidRequest,
              lambda ctx, r: vms.recover(ctx, r.uuid),
              "Bring a destroyed VM back, Stopped", asynchronous=True, resource="VmInstance",
              sync_on=("vm", "uuid"), tags=(TAG,)),
    _lifecycle("ExpungeVmInstance", "PUT", f"{ITEM}/actions/expunge", "expunge",
               "Delete a destroyed VM for good: its volumes, NICs and IPs with it"),
]
