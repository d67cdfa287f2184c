"""Where a VM runs and where its volumes live: a host with the CPU and memory for the VM, in a
cluster attached to the VM's networks and to a primary storage with room for its volumes.

What is held, and how it stays exact
------------------------------------
A VM holds its host's CPU and memory exactly while it has a ``host_uuid`` and its state is one
of :data:`capacity.HOLDING_STATES`, so a host's available capacity is its total less what its
VMs hold (what ``refresh_capacity`` computes from scratch). A volume holds its ``size`` on the
primary storage its ``primary_storage_uuid`` names.

Every change of a hold is a compare-and-set UPDATE of the holder's row (matched on the values
it was read with) and a relative UPDATE of the host or storage, in one transaction. When the
compare-and-set matches no row, another transaction made that change first, so nothing is
given back or taken twice: releasing twice, or concurrently, gives back once. Taking capacity
for a new placement is itself conditional (``... WHERE available >= needed``), so concurrent
allocations cannot oversubscribe a host or a storage; the database decides who gets the last
CPUs, on SQLite and on MySQL alike.

Choosing a host
---------------
One query finds the eligible hosts (scope, Connected, Enabled in an Enabled cluster, cluster
attached to the L2 networks of every requested L3 network and to an Enabled, Connected primary
storage with room for the volumes, enough CPU and memory free) and returns the :data:`TOP_K`
with the most memory free. Preferring the roomiest keeps VMs spread and nearly full hosts
out of the race. They are tried in uuid order, and a later round (after concurrent
allocations filled a whole round's candidates) only looks at greater uuids: MySQL keeps the
row lock of a host an UPDATE waited for even when the host then no longer fits, so one
transaction may end up holding several hosts, and taking them in one global order is what
rules out deadlocks between allocations. When no host fits, the error counts how many hosts
pass each condition in turn, so it says which one ruled the last ones out.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from chalicelib.compute.capacity import HOLDING_STATES
from chalicelib.db.models import (
    Cluster,
    Host,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    VmInstance,
    Volume,
    Zone,
)
from chalicelib.errors import Conflict, InvalidState, NotFound

TOP_K = 8
NO_HOST = "NoHostAvailable"
NO_PRIMARY_STORAGE = "NoPrimaryStorageAvailable"


def size_text(size: int) -> str:
    """Bytes as a person reads them: 8 GiB, 512 MiB, 100 B."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


# --- holding a host's CPU and memory -------------------------------------------------------


def holds_host(state: str, host_uuid: str | None) -> bool:
    return host_uuid is not None and state in HOLDING_STATES


def _still_eligible() -> ColumnElement[bool]:
    """Connected and Enabled, written as one expression rather than ``status = 'Connected'``
    so that MySQL finds the row by its primary key: through the status index it keeps locks on
    the entries of hosts it tried and skipped, and two allocations trying each other's hosts
    deadlock."""
    return case((and_(Host.status == "Connected", Host.state == "Enabled"), 1), else_=0) == 1


def _host_fits(cpu: int, memory: int) -> ColumnElement[bool]:
    return and_(_still_eligible(), Host.available_cpu_capacity >= cpu,
                Host.available_memory_capacity >= memory)


def _take(session: Session, host_uuid: str, cpu: int, memory: int, *,
          only_if_free: bool) -> bool:
    conditions = [Host.uuid == host_uuid]
    if only_if_free:
        conditions.append(_host_fits(cpu, memory))
    result = session.execute(
        update(Host).where(*conditions)
        .values(available_cpu_capacity=Host.available_cpu_capacity - cpu,
                available_memory_capacity=Host.available_memory_capacity - memory)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _give_back(session: Session, host_uuid: str, cpu: int, memory: int) -> None:
    session.execute(
        update(Host).where(Host.uuid == host_uuid)
        .values(available_cpu_capacity=Host.available_cpu_capacity + cpu,
                available_memory_capacity=Host.available_memory_capacity + memory)
        .execution_options(synchronize_session=False))


def _compare_and_set_vm(session: Session, vm: VmInstance, **values: object) -> bool:
    """Update the VM's row only if it still has the state and host it was read with."""
    host_matches = (VmInstance.host_uuid.is_(None) if vm.host_uuid is None
                    else VmInstance.host_uuid == vm.host_uuid)
    result = session.execute(
        update(VmInstance)
        .where(VmInstance.uuid == vm.uuid, VmInstance.state == vm.state, host_matches)
        .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


class Move(enum.Enum):
    DONE = "done"
    STALE = "the VM changed since it was read; nothing was done"
    NO_ROOM = "the host has not the CPU and memory free (or is not Connected and Enabled)"


def move_vm(session: Session, vm: VmInstance, *, state: str, host_uuid: str | None,
            only_if_free: bool = False) -> Move:
    """Give the VM ``state`` and ``host_uuid`` and move its CPU and memory hold to match:
    take it on the new host (only if it has the room, with ``only_if_free``), give back what
    it held on the old one. One compare-and-set on the VM's row as ``vm`` was read makes the
    move happen once however often, or however concurrently, it is asked for."""
    held, holds = holds_host(vm.state, vm.host_uuid), holds_host(state, host_uuid)
    moved_host = host_uuid != vm.host_uuid
    take = holds and (not held or moved_host)
    give_back = held and (not holds or moved_host)
    if take and not _take(session, host_uuid, vm.cpu_num, vm.memory_size,
                          only_if_free=only_if_free):
        return Move.NO_ROOM
    values: dict[str, object] = {"state": state, "host_uuid": host_uuid}
    if moved_host and vm.host_uuid is not None:
        values["last_host_uuid"] = vm.host_uuid
    if not _compare_and_set_vm(session, vm, **values):
        if take:
            _give_back(session, host_uuid, vm.cpu_num, vm.memory_size)
        session.expire(vm)
        return Move.STALE
    if give_back:
        _give_back(session, vm.host_uuid, vm.cpu_num, vm.memory_size)
    session.expire(vm)
    return Move.DONE


def read_vm(session: Session, vm_uuid: str) -> VmInstance:
    vm = session.get(VmInstance, vm_uuid, populate_existing=True)
    if vm is None:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    return vm


def _changed_meanwhile(vm_uuid: str) -> InvalidState:
    return InvalidState(f"VM {vm_uuid} changed while its host was being chosen; retry",
                        code="ConcurrentConflict")


# --- choosing a host ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRequest:
    """Where a VM may run, beyond having its CPU and memory free.

    ``disk_size`` is what its volumes need (root = image size, plus data disks) on one primary
    storage attached to the host's cluster. ``zone_uuid``/``cluster_uuid``/``host_uuid`` narrow
    the choice; ``avoid_host_uuids`` excludes hosts (e.g. one that just failed to start it)."""

    l3_network_uuids: Sequence[str] = ()
    disk_size: int = 0
    zone_uuid: str | None = None
    cluster_uuid: str | None = None
    host_uuid: str | None = None
    avoid_host_uuids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class _Condition:
    """One reason a host may be ruled out, as the error message says it."""

    passing: str
    clause: ColumnElement[bool]


def _name_of(session: Session, model: type, uuid: str, field_name: str) -> str:
    name = session.scalar(select(model.name).where(model.uuid == uuid))
    if name is None:
        raise NotFound(f"{model.__resource__} {uuid} does not exist",
                       details={"field": field_name, "uuid": uuid})
    return f"{model.__resource__.lower()} {name} ({uuid})"


def _scope(session: Session, request: HostRequest) -> tuple[list[ColumnElement[bool]], str]:
    clauses: list[ColumnElement[bool]] = []
    words = []
    for uuid, model, column, field_name in (
        (request.zone_uuid, Zone, Host.zone_uuid, "zoneUuid"),
        (request.cluster_uuid, Cluster, Host.cluster_uuid, "clusterUuid"),
        (request.host_uuid, Host, Host.uuid, "hostUuid"),
    ):
        if uuid:
            clauses.append(column == uuid)
            words.append(_name_of(session, model, uuid, field_name))
    if request.avoid_host_uuids:
        clauses.append(Host.uuid.not_in(request.avoid_host_uuids))
        words.append(f"other than {len(request.avoid_host_uuids)} excluded")
    return clauses, "hosts" + (" in " + ", ".join(words) if words else "")


def _l2_conditions(session: Session, l3_uuids: Sequence[str]) -> list[_Condition]:
    wanted = list(dict.fromkeys(l3_uuids))
    rows = session.execute(
        select(L3Network.uuid, L3Network.name, L2Network.uuid, L2Network.name)
        .join(L2Network, L2Network.uuid == L3Network.l2_network_uuid)
        .where(L3Network.uuid.in_(wanted))).all()
    found = {row[0] for row in rows}
    for uuid in wanted:
        if uuid not in found:
            raise NotFound(f"L3Network {uuid} does not exist",
                           details={"field": "l3NetworkUuids", "uuid": uuid})
    conditions = []
    for l3_uuid, l3_name, l2_uuid, l2_name in rows:
        attached = exists().where(L2NetworkClusterRef.cluster_uuid == Host.cluster_uuid,
                                  L2NetworkClusterRef.l2_network_uuid == l2_uuid)
        conditions.append(_Condition(
            f"in a cluster attached to L2 network {l2_name} ({l2_uuid}) of L3 network "
            f"{l3_name} ({l3_uuid})", attached))
    return conditions


def _usable_storage(cluster_uuid: ColumnElement | str, size: int) -> ColumnElement[bool]:
    return and_(PrimaryStorageClusterRef.cluster_uuid == cluster_uuid,
                PrimaryStorage.uuid == PrimaryStorageClusterRef.primary_storage_uuid,
                PrimaryStorage.state == "Enabled", PrimaryStorage.status == "Connected",
                PrimaryStorage.available_capacity >= size)


def _conditions(session: Session, request: HostRequest, cpu: int,
                memory: int) -> list[_Condition]:
    return [
        _Condition("Connected", Host.status == "Connected"),
        _Condition("Enabled in an Enabled cluster",
                   and_(Host.state == "Enabled", Cluster.state == "Enabled")),
        *_l2_conditions(session, request.l3_network_uuids),
        _Condition(f"in a cluster with an Enabled, Connected primary storage with "
                   f"{size_text(request.disk_size)} free",
                   exists().where(_usable_storage(Host.cluster_uuid, request.disk_size))),
        _Condition(f"with {cpu} CPUs and {size_text(memory)} memory free",
                   and_(Host.available_cpu_capacity >= cpu,
                        Host.available_memory_capacity >= memory)),
    ]


def _hosts(clauses: Sequence[ColumnElement[bool]]):
    return (select(Host).join(Cluster, Cluster.uuid == Host.cluster_uuid).where(*clauses))


def _count(session: Session, clauses: Sequence[ColumnElement[bool]]) -> int:
    return session.scalar(select(func.count()).select_from(_hosts(clauses).subquery()))


def _no_host(session: Session, vm: VmInstance, scope: list[ColumnElement[bool]],
             scope_text: str, conditions: list[_Condition]) -> Conflict:
    """Why no host fits: how many pass each condition in turn, up to the one none passes."""
    clauses = list(scope)
    passing = _count(session, clauses)
    steps = [f"{passing} {scope_text}"]
    for condition in conditions:
        clauses.append(condition.clause)
        passing = _count(session, clauses)
        steps.append(f"{passing} of those {condition.passing}")
        if passing == 0:
            break
    if passing:
        return Conflict(f"the hosts that fit VM {vm.name} ({vm.uuid}) were taken by concurrent "
                        f"allocations while it was being placed ({', '.join(steps)}); retry",
                        code="ConcurrentConflict", details={"vmUuid": vm.uuid})
    return Conflict(
        f"no host can take VM {vm.name} ({vm.uuid}) with {vm.cpu_num} CPUs and "
        f"{size_text(vm.memory_size)} memory: " + ", ".join(steps),
        code=NO_HOST, details={"vmUuid": vm.uuid, "hostsPassing": steps},
    )


def allocate_host(session: Session, vm_uuid: str, request: HostRequest) -> Host:
    """Choose a host for the VM and reserve its CPU and memory there (the VM's ``host_uuid``,
    ``cluster_uuid`` and ``zone_uuid`` are set). The VM must be in a holding state (Starting
    for create/start). Idempotent: a VM that already holds a host keeps it."""
    vm = read_vm(session, vm_uuid)
    if holds_host(vm.state, vm.host_uuid):
        return session.get(Host, vm.host_uuid, populate_existing=True)
    if vm.state not in HOLDING_STATES:
        raise InvalidState(f"VM {vm.name} ({vm.uuid}) is {vm.state}; a host is allocated "
                           f"only while it is one of {', '.join(HOLDING_STATES)}")
    scope, scope_text = _scope(session, request)
    conditions = _conditions(session, request, vm.cpu_num, vm.memory_size)
    clauses = scope + [condition.clause for condition in conditions]
    by_room = _hosts(clauses).order_by(Host.available_memory_capacity.desc(), Host.uuid)
    tried: str = ""
    for _ in range(3):  # a round loses only to allocations that filled all its candidates
        candidates = list(session.scalars(by_room.where(Host.uuid > tried).limit(TOP_K)))
        if not candidates:
            break
        for host in sorted(candidates, key=lambda h: h.uuid):
            if _place(session, vm, host):
                return session.get(Host, host.uuid, populate_existing=True)
            tried = host.uuid
    raise _no_host(session, vm, scope, scope_text, conditions)


def _place(session: Session, vm: VmInstance, host: Host) -> bool:
    """Reserve the VM's CPU and memory on the host if it still has them; False if not."""
    move = move_vm(session, vm, state=vm.state, host_uuid=host.uuid, only_if_free=True)
    if move is Move.STALE:
        raise _changed_meanwhile(vm.uuid)
    if move is Move.NO_ROOM:
        return False
    session.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid)
                    .values(cluster_uuid=host.cluster_uuid, zone_uuid=host.zone_uuid)
                    .execution_options(synchronize_session=False))
    session.expire(vm)
    return True


def release_host(session: Session, vm_uuid: str) -> bool:
    """Give back the CPU and memory the VM holds and detach it from its host (the host becomes
    its ``last_host_uuid``). True if this call gave something back; calling it again, or for a
    VM that holds nothing, changes nothing and returns False."""
    vm = session.get(VmInstance, vm_uuid, populate_existing=True)
    while vm is not None and vm.host_uuid is not None:
        held = holds_host(vm.state, vm.host_uuid)
        if move_vm(session, vm, state=vm.state, host_uuid=None) is Move.DONE:
            return held
        vm = session.get(VmInstance, vm_uuid, populate_existing=True)
    return False


# --- primary storage for volumes ----------------------------------------------------------


def _take_storage(session: Session, storage_uuid: str, size: int) -> bool:
    result = session.execute(
        update(PrimaryStorage)
        .where(PrimaryStorage.uuid == storage_uuid, PrimaryStorage.state == "Enabled",
               PrimaryStorage.status == "Connected", PrimaryStorage.available_capacity >= size)
        .values(available_capacity=PrimaryStorage.available_capacity - size)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _give_back_storage(session: Session, storage_uuid: str, size: int) -> None:
    session.execute(
        update(PrimaryStorage).where(PrimaryStorage.uuid == storage_uuid)
        .values(available_capacity=PrimaryStorage.available_capacity + size)
        .execution_options(synchronize_session=False))


def _set_volume_storage(session: Session, volume: Volume, storage_uuid: str | None) -> bool:
    """Compare-and-set of the volume's storage: only if it is still as it was read."""
    current = (Volume.primary_storage_uuid.is_(None) if volume.primary_storage_uuid is None
               else Volume.primary_storage_uuid == volume.primary_storage_uuid)
    result = session.execute(
        update(Volume).where(Volume.uuid == volume.uuid, current, Volume.size == volume.size)
        .values(primary_storage_uuid=storage_uuid).execution_options(synchronize_session=False))
    session.expire(volume)
    return result.rowcount == 1


def _volumes(session: Session, volume_uuids: Sequence[str]) -> list[Volume]:
    volumes = list(session.scalars(
        select(Volume).where(Volume.uuid.in_(volume_uuids))
        .execution_options(populate_existing=True)))
    missing = set(volume_uuids) - {volume.uuid for volume in volumes}
    if missing:
        raise NotFound(f"Volume {sorted(missing)[0]} does not exist",
                       details={"uuids": sorted(missing)})
    return volumes


def _no_storage(session: Session, cluster_uuid: str, size: int) -> Conflict:
    storages = session.execute(
        select(PrimaryStorage.name, PrimaryStorage.uuid, PrimaryStorage.state,
               PrimaryStorage.status, PrimaryStorage.available_capacity)
        .join(PrimaryStorageClusterRef,
              PrimaryStorageClusterRef.primary_storage_uuid == PrimaryStorage.uuid)
        .where(PrimaryStorageClusterRef.cluster_uuid == cluster_uuid)
        .order_by(PrimaryStorage.name)).all()
    seen = "; ".join(f"{name} ({uuid}) is {state}, {status}, {size_text(free)} free"
                     for name, uuid, state, status, free in storages) or "none is attached"
    return Conflict(
        f"no Enabled, Connected primary storage attached to cluster {cluster_uuid} has "
        f"{size_text(size)} free for the volumes: {seen}",
        code=NO_PRIMARY_STORAGE, details={"clusterUuid": cluster_uuid, "size": size},
    )


def allocate_primary_storage(session: Session, volume_uuids: Sequence[str],
                             host_uuid: str) -> PrimaryStorage:
    """Place the volumes on one primary storage attached to the host's cluster, reserving their
    sizes there (each volume's ``primary_storage_uuid`` is set). Volumes already placed stay
    where they are, so running it again changes nothing."""
    host = session.get(Host, host_uuid)
    if host is None:
        raise NotFound(f"Host {host_uuid} does not exist", details={"uuid": host_uuid})
    volumes = _volumes(session, volume_uuids)
    unplaced = [volume for volume in volumes if volume.primary_storage_uuid is None]
    placed = {volume.primary_storage_uuid for volume in volumes} - {None}
    if not unplaced:
        return session.get(PrimaryStorage, placed.pop())
    size = sum(volume.size for volume in unplaced)
    candidates = list(session.scalars(
        select(PrimaryStorage.uuid).join(PrimaryStorageClusterRef,
                                         PrimaryStorageClusterRef.primary_storage_uuid
                                         == PrimaryStorage.uuid)
        .where(_usable_storage(host.cluster_uuid, size),
               *([PrimaryStorage.uuid.in_(placed)] if placed else []))
        .order_by(PrimaryStorage.uuid)))  # one global order: see "Choosing a host"
    for storage_uuid in candidates:
        if not _take_storage(session, storage_uuid, size):
            continue
        for volume in unplaced:
            if not _set_volume_storage(session, volume, storage_uuid):
                _give_back_storage(session, storage_uuid, volume.size)  # placed meanwhile
        return session.get(PrimaryStorage, storage_uuid, populate_existing=True)
    raise _no_storage(session, host.cluster_uuid, size)


def release_primary_storage(session: Session, volume_uuids: Sequence[str]) -> int:
    """Give back the sizes the volumes hold on their primary storage and unplace them (for a
    rollback, before the volumes are deleted). Returns the bytes given back; a second call
    gives back nothing."""
    given_back = 0
    for volume in session.scalars(select(Volume).where(Volume.uuid.in_(volume_uuids))
                                  .execution_options(populate_existing=True)):
        storage_uuid, size = volume.primary_storage_uuid, volume.size
        if storage_uuid is not None and _set_volume_storage(session, volume, None):
            _give_back_storage(session, storage_uuid, size)
            given_back += size
    return given_back
