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
import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

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

# The hot statements are built once, on the tables (plain Core: no ORM layer per execution),
# with bind parameters; each execution then costs a cached compilation's lookup.
HOSTS = Host.__table__
VMS = VmInstance.__table__
CLUSTERS = Cluster.__table__
STORAGES = PrimaryStorage.__table__
STORAGE_REFS = PrimaryStorageClusterRef.__table__
L2_REFS = L2NetworkClusterRef.__table__
VOLUMES = Volume.__table__


def size_text(size: int) -> str:
    """Bytes as a person reads them: 8 GiB, 512 MiB, 100 B."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def forget_loaded(session: Session, model: type, uuid: str) -> None:
    """A row was changed by a statement the session did not see: the object loaded for it,
    if any, reads it again when next used."""
    loaded = session.identity_map.get(identity_key(model, uuid))
    if loaded is not None:
        session.expire(loaded)


# --- holding a host's CPU and memory -------------------------------------------------------


class HeldVm(Protocol):
    """What a hold is about: a VmInstance, or a snapshot of its row (:class:`VmHold`)."""

    uuid: str
    state: str
    host_uuid: str | None
    cpu_num: int
    memory_size: int


@dataclass(frozen=True)
class VmHold:
    uuid: str
    name: str
    state: str
    host_uuid: str | None
    cpu_num: int
    memory_size: int


_READ_HOLD = select(VMS.c.uuid, VMS.c.name, VMS.c.state, VMS.c.host_uuid, VMS.c.cpu_num,
                    VMS.c.memory_size).where(VMS.c.uuid == bindparam("vm"))


def read_hold(session: Session, vm_uuid: str) -> VmHold:
    """The VM's state, host and size as its row says now."""
    row = session.execute(_READ_HOLD, {"vm": vm_uuid}).first()
    if row is None:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    return VmHold(*row)


def holds_host(state: str, host_uuid: str | None) -> bool:
    return host_uuid is not None and state in HOLDING_STATES


def _still_eligible() -> ColumnElement[bool]:
    """Connected and Enabled, written as one expression rather than ``status = 'Connected'``
    so that MySQL finds the row by its primary key: through the status index it keeps locks on
    the entries of hosts it tried and skipped, and two allocations trying each other's hosts
    deadlock."""
    return case((and_(HOSTS.c.status == "Connected", HOSTS.c.state == "Enabled"), 1),
                else_=0) == 1


def _change_hold(change: Callable[[Any, Any], Any], *, only_if_free: bool):
    conditions = [HOSTS.c.uuid == bindparam("host")]
    if only_if_free:
        conditions += [_still_eligible(), HOSTS.c.available_cpu_capacity >= bindparam("cpu"),
                       HOSTS.c.available_memory_capacity >= bindparam("memory")]
    return update(HOSTS).where(*conditions).values(
        available_cpu_capacity=change(HOSTS.c.available_cpu_capacity, bindparam("cpu")),
        available_memory_capacity=change(HOSTS.c.available_memory_capacity,
                                         bindparam("memory")))


_TAKE = {free: _change_hold(operator.sub, only_if_free=free) for free in (False, True)}
_GIVE_BACK = _change_hold(operator.add, only_if_free=False)


def _take(session: Session, host_uuid: str, cpu: int, memory: int, *,
          only_if_free: bool) -> bool:
    result = session.execute(_TAKE[only_if_free],
                             {"host": host_uuid, "cpu": cpu, "memory": memory})
    return result.rowcount == 1


def _give_back(session: Session, host_uuid: str, cpu: int, memory: int) -> None:
    session.execute(_GIVE_BACK, {"host": host_uuid, "cpu": cpu, "memory": memory})


@functools.cache
def _compare_and_set_statement(host_known: bool, columns: tuple[str, ...]) -> Update:
    host_matches = (VMS.c.host_uuid == bindparam("was_host") if host_known
                    else VMS.c.host_uuid.is_(None))
    return (update(VMS)
            .where(VMS.c.uuid == bindparam("vm"), VMS.c.state == bindparam("was_state"),
                   host_matches)
            .values({column: bindparam(f"new_{column}") for column in columns}))


def _compare_and_set_vm(session: Session, vm: HeldVm, **values: object) -> bool:
    """Update the VM's row only if it still has the state and host it was read with."""
    statement = _compare_and_set_statement(vm.host_uuid is not None, tuple(sorted(values)))
    result = session.execute(statement, {
        "vm": vm.uuid, "was_state": vm.state, "was_host": vm.host_uuid,
        **{f"new_{column}": value for column, value in values.items()}})
    return result.rowcount == 1


class Move(enum.Enum):
    DONE = "done"
    STALE = "the VM changed since it was read; nothing was done"
    NO_ROOM = "the host has not the CPU and memory free (or is not Connected and Enabled)"


def move_vm(session: Session, vm: HeldVm, *, state: str, host_uuid: str | None,
            only_if_free: bool = False, **also: object) -> Move:
    """Give the VM ``state`` and ``host_uuid`` (and the columns in ``also``) and move its
    CPU and memory hold to match: take it on the new host (only if it has the room, with
    ``only_if_free``), give back what it held on the old one. One compare-and-set on the
    VM's row as ``vm`` was read makes the move happen once however often, or however
    concurrently, it is asked for."""
    held, holds = holds_host(vm.state, vm.host_uuid), holds_host(state, host_uuid)
    moved_host = host_uuid != vm.host_uuid
    take = holds and (not held or moved_host)
    give_back = held and (not holds or moved_host)
    if take and not _take(session, host_uuid, vm.cpu_num, vm.memory_size,
                          only_if_free=only_if_free):
        return Move.NO_ROOM
    values: dict[str, object] = {"state": state, "host_uuid": host_uuid, **also}
    if moved_host and vm.host_uuid is not None:
        values["last_host_uuid"] = vm.host_uuid
    if not _compare_and_set_vm(session, vm, **values):
        if take:
            _give_back(session, host_uuid, vm.cpu_num, vm.memory_size)
        forget_loaded(session, VmInstance, vm.uuid)
        return Move.STALE
    if give_back:
        _give_back(session, vm.host_uuid, vm.cpu_num, vm.memory_size)
    forget_loaded(session, VmInstance, vm.uuid)
    return Move.DONE


_VM = (select(VmInstance).where(VmInstance.uuid == bindparam("vm"))
       .execution_options(populate_existing=True))


def read_vm(session: Session, vm_uuid: str) -> VmInstance:
    """The VM as its row is now (an object already loaded is read again)."""
    vm = session.scalars(_VM, {"vm": vm_uuid}).one_or_none()
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
class ChosenHost:
    uuid: str
    cluster_uuid: str
    zone_uuid: str


@dataclass(frozen=True)
class _Shape:
    """What the eligibility statements depend on besides their parameters."""

    zone: bool
    cluster: bool
    host: bool
    avoid: bool
    networks: int


@dataclass(frozen=True)
class _L2Of:
    l3_uuid: str
    l3_name: str
    l2_uuid: str
    l2_name: str


_L2_OF = (select(L3Network.__table__.c.uuid, L3Network.__table__.c.name,
                 L2Network.__table__.c.uuid, L2Network.__table__.c.name)
          .join(L2Network.__table__,
                L2Network.__table__.c.uuid == L3Network.__table__.c.l2_network_uuid)
          .where(L3Network.__table__.c.uuid.in_(bindparam("l3s", expanding=True))))


def _l2_networks(session: Session, l3_uuids: Sequence[str]) -> list[_L2Of]:
    wanted = list(dict.fromkeys(l3_uuids))
    if not wanted:
        return []
    rows = [_L2Of(*row) for row in session.execute(_L2_OF, {"l3s": wanted})]
    found = {row.l3_uuid for row in rows}
    for uuid in wanted:
        if uuid not in found:
            raise NotFound(f"L3Network {uuid} does not exist",
                           details={"field": "l3NetworkUuids", "uuid": uuid})
    return rows


def _usable_storage(cluster_uuid: ColumnElement, size: ColumnElement) -> ColumnElement[bool]:
    return and_(STORAGE_REFS.c.cluster_uuid == cluster_uuid,
                STORAGES.c.uuid == STORAGE_REFS.c.primary_storage_uuid,
                STORAGES.c.state == "Enabled", STORAGES.c.status == "Connected",
                STORAGES.c.available_capacity >= size)


def _not_an_index(column: ColumnElement[str]) -> ColumnElement[str]:
    """The column's value in a form no index is used for. A host's status or cluster picks
    nearly every host of a cloud; looked up by them, every host is read and sorted by free
    memory. Without them the database walks ``ix_hosts_free_memory`` from the top and stops
    at the TOP_K-th host that passes (1,000 hosts: 0.34 ms a VM down to 0.02 ms on SQLite)."""
    return column.concat("")


def _in_clusters_where(*clauses: ColumnElement[bool]) -> ColumnElement[bool]:
    # The clusters that pass are found once per statement, not once per host.
    return _not_an_index(HOSTS.c.cluster_uuid).in_(select(CLUSTERS.c.uuid).where(*clauses))


def _scope_clauses(shape: _Shape) -> list[ColumnElement[bool]]:
    clauses = []
    if shape.zone:
        clauses.append(HOSTS.c.zone_uuid == bindparam("zone"))
    if shape.cluster:
        clauses.append(HOSTS.c.cluster_uuid == bindparam("cluster"))
    if shape.host:
        clauses.append(HOSTS.c.uuid == bindparam("host"))
    if shape.avoid:
        clauses.append(HOSTS.c.uuid.not_in(bindparam("avoid", expanding=True)))
    return clauses


def _condition_clauses(shape: _Shape) -> list[ColumnElement[bool]]:
    """A host's conditions, in the order :func:`_condition_texts` names them."""
    return [
        _not_an_index(HOSTS.c.status) == "Connected",
        and_(HOSTS.c.state == "Enabled", _in_clusters_where(CLUSTERS.c.state == "Enabled")),
        *(_in_clusters_where(exists().where(
            L2_REFS.c.cluster_uuid == CLUSTERS.c.uuid,
            L2_REFS.c.l2_network_uuid == bindparam(f"l2_{n}"))) for n in range(shape.networks)),
        _in_clusters_where(exists().where(_usable_storage(CLUSTERS.c.uuid, bindparam("disk")))),
        and_(HOSTS.c.available_cpu_capacity >= bindparam("cpu"),
             HOSTS.c.available_memory_capacity >= bindparam("memory")),
    ]


def _condition_texts(networks: list[_L2Of], disk_size: int, cpu: int,
                     memory: int) -> list[str]:
    return [
        "Connected",
        "Enabled in an Enabled cluster",
        *(f"in a cluster attached to L2 network {n.l2_name} ({n.l2_uuid}) of L3 network "
          f"{n.l3_name} ({n.l3_uuid})" for n in networks),
        f"in a cluster with an Enabled, Connected primary storage with "
        f"{size_text(disk_size)} free",
        f"with {cpu} CPUs and {size_text(memory)} memory free",
    ]


_CANDIDATES: dict[_Shape, Any] = {}


def _candidates_statement(shape: _Shape):
    """The TOP_K eligible hosts with the most memory free, past uuid ``tried``."""
    if shape not in _CANDIDATES:
        _CANDIDATES[shape] = (
            select(HOSTS.c.uuid, HOSTS.c.cluster_uuid, HOSTS.c.zone_uuid)
            .where(*_scope_clauses(shape), *_condition_clauses(shape),
                   HOSTS.c.uuid > bindparam("tried"))
            .order_by(HOSTS.c.available_memory_capacity.desc(), HOSTS.c.uuid).limit(TOP_K))
    return _CANDIDATES[shape]


def _name_of(session: Session, model: type, uuid: str, field_name: str) -> str:
    name = session.scalar(select(model.name).where(model.uuid == uuid))
    if name is None:
        raise NotFound(f"{model.__resource__} {uuid} does not exist",
                       details={"field": field_name, "uuid": uuid})
    return f"{model.__resource__.lower()} {name} ({uuid})"


def _scope_text(session: Session, request: HostRequest) -> str:
    words = [_name_of(session, model, uuid, field_name) for uuid, model, field_name in (
        (request.zone_uuid, Zone, "zoneUuid"), (request.cluster_uuid, Cluster, "clusterUuid"),
        (request.host_uuid, Host, "hostUuid")) if uuid]
    if request.avoid_host_uuids:
        words.append(f"other than {len(request.avoid_host_uuids)} excluded")
    return "hosts" + (" in " + ", ".join(words) if words else "")


def _count(session: Session, clauses: Sequence[ColumnElement[bool]],
           params: dict[str, Any]) -> int:
    return session.scalar(select(func.count()).select_from(HOSTS).where(*clauses), params)


def _no_host(session: Session, vm: VmHold, request: HostRequest, shape: _Shape,
             networks: list[_L2Of], params: dict[str, Any]) -> Conflict:
    """Why no host fits: how many pass each condition in turn, up to the one none passes."""
    clauses = _scope_clauses(shape)
    passing = _count(session, clauses, params)
    steps = [f"{passing} {_scope_text(session, request)}"]
    texts = _condition_texts(networks, request.disk_size, vm.cpu_num, vm.memory_size)
    for text, clause in zip(texts, _condition_clauses(shape), strict=True):
        clauses.append(clause)
        passing = _count(session, clauses, params)
        steps.append(f"{passing} of those {text}")
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


_HOST_PLACE = select(HOSTS.c.uuid, HOSTS.c.cluster_uuid, HOSTS.c.zone_uuid).where(
    HOSTS.c.uuid == bindparam("host"))


def allocate_host(session: Session, vm_uuid: str, request: HostRequest) -> ChosenHost:
    """Choose a host for the VM and reserve its CPU and memory there (the VM's ``host_uuid``,
    ``cluster_uuid`` and ``zone_uuid`` are set). The VM must be in a holding state (Starting
    for create/start). Idempotent: a VM that already holds a host keeps it."""
    vm = read_hold(session, vm_uuid)
    if holds_host(vm.state, vm.host_uuid):
        return ChosenHost(*session.execute(_HOST_PLACE, {"host": vm.host_uuid}).one())
    if vm.state not in HOLDING_STATES:
        raise InvalidState(f"VM {vm.name} ({vm.uuid}) is {vm.state}; a host is allocated "
                           f"only while it is one of {', '.join(HOLDING_STATES)}")
    networks = _l2_networks(session, request.l3_network_uuids)
    shape = _Shape(bool(request.zone_uuid), bool(request.cluster_uuid),
                   bool(request.host_uuid), bool(request.avoid_host_uuids), len(networks))
    params: dict[str, Any] = {
        "zone": request.zone_uuid, "cluster": request.cluster_uuid, "host": request.host_uuid,
        "avoid": sorted(request.avoid_host_uuids), "disk": request.disk_size,
        "cpu": vm.cpu_num, "memory": vm.memory_size,
        **{f"l2_{n}": network.l2_uuid for n, network in enumerate(networks)}}
    statement = _candidates_statement(shape)
    tried = ""
    for _ in range(3):  # a round loses only to allocations that filled all its candidates
        candidates = sorted((ChosenHost(*row) for row in session.execute(
            statement, {**params, "tried": tried})), key=lambda host: host.uuid)
        if not candidates:
            break
        for host in candidates:
            if _place(session, vm, host):
                return host
            tried = host.uuid
    raise _no_host(session, vm, request, shape, networks, params)


def _place(session: Session, vm: VmHold, host: ChosenHost) -> bool:
    """Reserve the VM's CPU and memory on the host if it still has them; False if not."""
    move = move_vm(session, vm, state=vm.state, host_uuid=host.uuid, only_if_free=True,
                   cluster_uuid=host.cluster_uuid, zone_uuid=host.zone_uuid)
    if move is Move.STALE:
        raise _changed_meanwhile(vm.uuid)
    return move is Move.DONE


def release_host(session: Session, vm_uuid: str) -> bool:
    """Give back the CPU and memory the VM holds and detach it from its host (the host becomes
    its ``last_host_uuid``). True if this call gave something back; calling it again, or for a
    VM that holds nothing, changes nothing and returns False."""
    while True:
        row = session.execute(_READ_HOLD, {"vm": vm_uuid}).first()
        if row is None or row.host_uuid is None:
            return False
        vm = VmHold(*row)
        if move_vm(session, vm, state=vm.state, host_uuid=None) is Move.DONE:
            return holds_host(vm.state, vm.host_uuid)


# --- primary storage for volumes ----------------------------------------------------------


@dataclass(frozen=True)
class ChosenStorage:
    uuid: str
    mount_path: str


@dataclass(frozen=True)
class _PlacedVolume:
    uuid: str
    primary_storage_uuid: str | None
    size: int


_TAKE_STORAGE = (
    update(STORAGES)
    .where(STORAGES.c.uuid == bindparam("storage"), STORAGES.c.state == "Enabled",
           STORAGES.c.status == "Connected", STORAGES.c.available_capacity >= bindparam("size"))
    .values(available_capacity=STORAGES.c.available_capacity - bindparam("size")))
_GIVE_BACK_STORAGE = (
    update(STORAGES).where(STORAGES.c.uuid == bindparam("storage"))
    .values(available_capacity=STORAGES.c.available_capacity + bindparam("size")))


def _take_storage(session: Session, storage_uuid: str, size: int) -> bool:
    return session.execute(_TAKE_STORAGE, {"storage": storage_uuid, "size": size}).rowcount == 1


def _give_back_storage(session: Session, storage_uuid: str, size: int) -> None:
    session.execute(_GIVE_BACK_STORAGE, {"storage": storage_uuid, "size": size})


def _set_storage_of(placed: bool):
    current = (VOLUMES.c.primary_storage_uuid == bindparam("current") if placed
               else VOLUMES.c.primary_storage_uuid.is_(None))
    return (update(VOLUMES)
            .where(VOLUMES.c.uuid == bindparam("volume"), current,
                   VOLUMES.c.size == bindparam("volume_size"))
            .values(primary_storage_uuid=bindparam("storage")))


_SET_STORAGE = {placed: _set_storage_of(placed) for placed in (False, True)}


def _set_volume_storage(session: Session, volume: _PlacedVolume,
                        storage_uuid: str | None) -> bool:
    """Compare-and-set of the volume's storage: only if it is still as it was read."""
    result = session.execute(_SET_STORAGE[volume.primary_storage_uuid is not None], {
        "volume": volume.uuid, "current": volume.primary_storage_uuid,
        "volume_size": volume.size, "storage": storage_uuid})
    forget_loaded(session, Volume, volume.uuid)
    return result.rowcount == 1


_PLACED_VOLUMES = select(VOLUMES.c.uuid, VOLUMES.c.primary_storage_uuid, VOLUMES.c.size).where(
    VOLUMES.c.uuid.in_(bindparam("volumes", expanding=True)))


def _placed_volumes(session: Session, volume_uuids: Sequence[str]) -> list[_PlacedVolume]:
    return [_PlacedVolume(*row) for row in session.execute(
        _PLACED_VOLUMES, {"volumes": list(volume_uuids)})]


def _volumes(session: Session, volume_uuids: Sequence[str]) -> list[_PlacedVolume]:
    volumes = _placed_volumes(session, volume_uuids)
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


_CLUSTER_OF_HOST = select(HOSTS.c.cluster_uuid).where(HOSTS.c.uuid == bindparam("host"))
_STORAGE = select(STORAGES.c.uuid, STORAGES.c.mount_path)


def _storage_candidates(among_placed: bool):
    statement = (_STORAGE.join(STORAGE_REFS,
                               STORAGE_REFS.c.primary_storage_uuid == STORAGES.c.uuid)
                 .where(_usable_storage(bindparam("cluster"), bindparam("size"))))
    if among_placed:
        statement = statement.where(STORAGES.c.uuid.in_(bindparam("placed", expanding=True)))
    return statement.order_by(STORAGES.c.uuid)  # one global order: see "Choosing a host"


_STORAGE_CANDIDATES = {among: _storage_candidates(among) for among in (False, True)}


def allocate_primary_storage(session: Session, volume_uuids: Sequence[str],
                             host_uuid: str) -> PrimaryStorage:
    """:func:`place_volumes`, and the primary storage they are on."""
    return session.get(PrimaryStorage, place_volumes(session, volume_uuids, host_uuid).uuid,
                       populate_existing=True)


def place_volumes(session: Session, volume_uuids: Sequence[str],
                  host_uuid: str) -> ChosenStorage:
    """Place the volumes on one primary storage attached to the host's cluster, reserving their
    sizes there (each volume's ``primary_storage_uuid`` is set). Volumes already placed stay
    where they are, so running it again changes nothing."""
    cluster_uuid = session.scalar(_CLUSTER_OF_HOST, {"host": host_uuid})
    if cluster_uuid is None:
        raise NotFound(f"Host {host_uuid} does not exist", details={"uuid": host_uuid})
    volumes = _volumes(session, volume_uuids)
    unplaced = [volume for volume in volumes if volume.primary_storage_uuid is None]
    placed = sorted({volume.primary_storage_uuid for volume in volumes} - {None})
    if not unplaced:
        return ChosenStorage(*session.execute(
            _STORAGE.where(STORAGES.c.uuid == bindparam("storage")),
            {"storage": placed[0]}).one())
    size = sum(volume.size for volume in unplaced)
    candidates = [ChosenStorage(*row) for row in session.execute(
        _STORAGE_CANDIDATES[bool(placed)], {"cluster": cluster_uuid, "size": size,
                                            "placed": placed})]
    for storage in candidates:
        if not _take_storage(session, storage.uuid, size):
            continue
        for volume in unplaced:
            if not _set_volume_storage(session, volume, storage.uuid):
                _give_back_storage(session, storage.uuid, volume.size)  # placed meanwhile
        forget_loaded(session, PrimaryStorage, storage.uuid)
        return storage
    raise _no_storage(session, cluster_uuid, size)


def release_primary_storage(session: Session, volume_uuids: Sequence[str]) -> int:
    """Give back the sizes the volumes hold on their primary storage and unplace them (for a
    rollback, before the volumes are deleted). Returns the bytes given back; a second call
    gives back nothing."""
    given_back = 0
    for volume in _placed_volumes(session, volume_uuids):
        storage_uuid = volume.primary_storage_uuid
        if storage_uuid is not None and _set_volume_storage(session, volume, None):
            _give_back_storage(session, storage_uuid, volume.size)
            forget_loaded(session, PrimaryStorage, storage_uuid)
            given_back += volume.size
    return given_back
