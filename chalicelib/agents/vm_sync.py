"""What the agent says runs on its host wins over the database, except while an operation on
that VM is queued or running (the operation owns the VM's state until it ends)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.agents.protocol import ReportedVm
from chalicelib.agents.tracker import note_strangers
from chalicelib.db.models import ApiJob, Host, VmInstance
from chalicelib.ops.levels import signature_of

SETTLED = ("Running", "Stopped", "Paused", "Unknown")


def _busy(db: Session, vm_uuids: list[str]) -> set[str]:
    """Those of the VMs with an operation queued or running, in one query."""
    signatures = {signature_of("vm", uuid): uuid for uuid in vm_uuids}
    if not signatures:
        return set()
    return {signatures[signature] for signature in db.scalars(
        select(ApiJob.signature).where(ApiJob.signature.in_(signatures),
                                       ApiJob.state.in_(("Waiting", "Running"))))}


def sync_vms(db: Session, host: Host, reported: list[ReportedVm]) -> list[str]:
    """Correct the database to what the host runs. Returns the uuids whose state changed."""
    on_host = {vm.uuid: vm for vm in db.scalars(
        select(VmInstance).where(VmInstance.host_uuid == host.uuid))}
    seen = {vm.uuid: vm.state for vm in reported}
    differing = {uuid: vm for uuid, vm in on_host.items()
                 if vm.state in SETTLED and vm.state != seen.get(uuid, "Stopped")}
    busy = _busy(db, list(differing))
    changed = []
    for uuid, vm in differing.items():
        if uuid in busy:
            continue
        actual = seen.get(uuid, "Stopped")  # defined on the host no more: not running
        previous, vm.state = vm.state, actual
        changed.append(uuid)
        events.publish("vm.state.changed", {"vmUuid": uuid, "hostUuid": host.uuid,
                                            "from": previous, "to": actual, "by": "sync"})
    unknown = [uuid for uuid in seen if uuid not in on_host]
    if unknown:
        # A stopped VM stays defined on its last host (that is where it starts again): not
        # a stranger, and not the sync's to change (it holds no host while it is stopped).
        stopped_here = set(db.scalars(select(VmInstance.uuid).where(
            VmInstance.host_uuid.is_(None), VmInstance.last_host_uuid == host.uuid,
            VmInstance.uuid.in_(unknown))))
        unknown = [uuid for uuid in unknown if uuid not in stopped_here]
    note_strangers(host, unknown)
    return changed
