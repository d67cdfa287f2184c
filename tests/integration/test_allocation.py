"""Choosing a host, primary storage and backup storage for a VM, on SQLite and MySQL: only
eligible hosts, clear reasons when none fits, no oversubscription under concurrency, releases
that give back exactly once, and VM state changes that keep host capacity exact."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import event

from chalicelib.compute.allocation import (
    HostRequest,
    allocate_host,
    allocate_primary_storage,
    release_host,
    release_primary_storage,
)
from chalicelib.compute.vm_states import begin, change_state, finish
from chalicelib.db.database import Database
from chalicelib.db.models import Host, L2NetworkClusterRef, PrimaryStorage, VmInstance
from chalicelib.errors import Conflict, InvalidState
from chalicelib.storage.backup_selection import select_backup_storage
from tests.support.datacenter import Builder, GiB, Site, build_site, building
from tests.support.invariants import CAPACITY_CHECKS, CHECKS, assert_no_leaks


def request_for(site: Site, **overrides) -> HostRequest:
    return replace(HostRequest(l3_network_uuids=[site.l3], disk_size=10 * GiB), **overrides)


def host_of(db: Database, uuid: str) -> Host:
    with db.session() as session:
        return session.get(Host, uuid)


def vm_of(db: Database, uuid: str) -> VmInstance:
    with db.session() as session:
        return session.get(VmInstance, uuid)


def no_leaks(db: Database, checks=CAPACITY_CHECKS) -> None:
    """Capacity is exact at any time; the other rules hold only once no VM is half-created."""
    with db.session() as session:
        assert_no_leaks(session, checks)


# --- which hosts are eligible ----------------------------------------------------------------


def other_cluster(b: Builder, site: Site, *, l2: bool = True, storage: int | None = 1000 * GiB,
                  storage_state: str = "Enabled", state: str = "Enabled") -> str:
    cluster = b.cluster(site.zone, "other", state=state)
    if l2:
        b.session.add(L2NetworkClusterRef(l2_network_uuid=site.l2, cluster_uuid=cluster))
    if storage is not None:
        b.primary_storage(site.zone, [cluster], capacity=storage, name="other-ps",
                          state=storage_state)
    b.session.flush()
    return cluster


@dataclass(frozen=True)
class Ineligible:
    """A host that must never be chosen, the request that leaves it out, and what the error
    says when it is the only host asked for."""

    make: Callable[[Builder, Site], str]
    says: str
    request: Callable[[Site], dict] = lambda site: {}


INELIGIBLE = {
    "disconnected": Ineligible(lambda b, s: b.host(s.cluster, "bad", status="Disconnected"),
                               "0 of those Connected"),
    "connecting": Ineligible(lambda b, s: b.host(s.cluster, "bad", status="Connecting"),
                             "0 of those Connected"),
    "disabled": Ineligible(lambda b, s: b.host(s.cluster, "bad", state="Disabled"),
                           "0 of those Enabled in an Enabled cluster"),
    "in a disabled cluster": Ineligible(
        lambda b, s: b.host(other_cluster(b, s, state="Disabled"), "bad"),
        "0 of those Enabled in an Enabled cluster"),
    "outside the requested cluster": Ineligible(
        lambda b, s: b.host(other_cluster(b, s), "bad"), "0 hosts in",
        lambda site: {"cluster_uuid": site.cluster}),
    "in a cluster without the L2 network": Ineligible(
        lambda b, s: b.host(other_cluster(b, s, l2=False), "bad"),
        "0 of those in a cluster attached to L2 network l2"),
    "too small": Ineligible(lambda b, s: b.host(s.cluster, "bad", cpu=1, memory=64 * GiB),
                            "0 of those with 2 CPUs and 2 GiB memory free"),
    "short of memory": Ineligible(lambda b, s: b.host(s.cluster, "bad", cpu=16, memory=GiB),
                                  "0 of those with 2 CPUs and 2 GiB memory free"),
    "in a cluster without primary storage": Ineligible(
        lambda b, s: b.host(other_cluster(b, s, storage=None), "bad"),
        "0 of those in a cluster with an Enabled, Connected primary storage with 10 GiB free"),
    "in a cluster whose primary storage is too small": Ineligible(
        lambda b, s: b.host(other_cluster(b, s, storage=5 * GiB), "bad"),
        "0 of those in a cluster with an Enabled, Connected primary storage with 10 GiB free"),
    "in a cluster whose primary storage is disabled": Ineligible(
        lambda b, s: b.host(other_cluster(b, s, storage_state="Disabled"), "bad"),
        "0 of those in a cluster with an Enabled, Connected primary storage"),
}


@pytest.mark.parametrize("kind", INELIGIBLE)
def test_allocation_never_picks_an_ineligible_host(db, kind):
    ineligible = INELIGIBLE[kind]
    with building(db) as b:
        site = build_site(b)
        ineligible.make(b, site)
        vms = [b.vm(f"vm{i}", cpu=2, memory=2 * GiB) for i in range(6)]
    for vm in vms:
        with db.session() as session:
            host = allocate_host(session, vm, request_for(site, **ineligible.request(site)))
            assert host.uuid == site.host
    assert {vm_of(db, vm).host_uuid for vm in vms} == {site.host}
    assert vm_of(db, vms[0]).cluster_uuid == site.cluster
    no_leaks(db)


@pytest.mark.parametrize("kind", INELIGIBLE)
def test_when_no_host_fits_the_error_says_why(db, kind):
    ineligible = INELIGIBLE[kind]
    with building(db) as b:
        site = build_site(b)
        bad = ineligible.make(b, site)
        vm = b.vm("web", cpu=2, memory=2 * GiB)
    with db.session() as session, pytest.raises(Conflict) as raised:
        allocate_host(session, vm, request_for(site, host_uuid=bad, **ineligible.request(site)))
    assert raised.value.code == "NoHostAvailable"
    assert "no host can take VM web" in raised.value.message
    assert ineligible.says in raised.value.message, raised.value.message
    assert vm_of(db, vm).host_uuid is None
    assert host_of(db, bad).available_cpu_capacity == host_of(db, bad).total_cpu_capacity


def test_allocation_spreads_over_the_roomiest_hosts_and_reserves_exactly(db):
    with building(db) as b:
        site = build_site(b, cpu=8, memory=16 * GiB)
        second = b.host(site.cluster, "second", cpu=8, memory=16 * GiB)
        vms = [b.vm(f"vm{i}", cpu=2, memory=4 * GiB) for i in range(8)]
    for vm in vms:
        with db.session() as session:
            allocate_host(session, vm, request_for(site))
    for host in (site.host, second):
        assert host_of(db, host).available_cpu_capacity == 0
        assert host_of(db, host).available_memory_capacity == 0
    no_leaks(db)


def test_a_vm_must_be_starting_to_get_a_host_and_keeps_the_one_it_has(db):
    with building(db) as b:
        site = build_site(b)
        created = b.vm("created", state="Created")
        starting = b.vm("starting", cpu=4)
    with db.session() as session, pytest.raises(InvalidState, match="is Created"):
        allocate_host(session, created, request_for(site))
    for _ in range(2):
        with db.session() as session:
            assert allocate_host(session, starting, request_for(site)).uuid == site.host
    assert host_of(db, site.host).available_cpu_capacity == 16 - 4
    no_leaks(db)


def test_an_unknown_l3_network_is_not_found(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
    with db.session() as session, pytest.raises(Exception, match="L3Network nope"):
        allocate_host(session, vm, request_for(site, l3_network_uuids=["nope"]))


def test_allocating_among_a_thousand_hosts_is_one_candidate_query(db):
    with building(db) as b:
        site = build_site(b)
        for i in range(999):
            b.host(site.cluster, f"h{i}", cpu=16, memory=(1 + i % 50) * GiB)
        vm = b.vm()
    statements: list[str] = []
    parameters: dict[str, object] = {}

    def count(_connection, _cursor, statement, params, *_args):
        statements.append(statement)
        parameters[statement] = params
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as session:
            allocate_host(session, vm, request_for(site))
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    selects_of_hosts = [s for s in statements if s.lstrip().upper().startswith("SELECT")
                        and "FROM hosts" in s]
    assert len(selects_of_hosts) <= 2, statements  # the candidates, and the chosen host
    assert len(statements) <= 10, statements
    if db.engine.dialect.name == "sqlite":  # MariaDB's optimizer makes its own plan
        # The candidates are found walking the hosts by free memory, not by reading and
        # sorting all of them (what looking them up by status or cluster did).
        candidates = next(s for s in selects_of_hosts if "ORDER BY" in s)
        with db.engine.connect() as connection:
            plan = str(connection.exec_driver_sql("EXPLAIN QUERY PLAN " + candidates,
                                                  parameters[candidates]).all())
        assert "ix_hosts_free_memory" in plan and "TEMP B-TREE" not in plan, plan


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_allocations_never_oversubscribe_a_host(db):
    with building(db) as b:
        site = build_site(b, cpu=4, memory=64 * GiB)
        b.host(site.cluster, "second", cpu=4, memory=64 * GiB)
        b.host(site.cluster, "third", cpu=3, memory=64 * GiB)
        vms = [b.vm(f"vm{i}", cpu=1, memory=GiB) for i in range(30)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def place(vm: str) -> None:
        try:
            with db.session() as session:
                allocate_host(session, vm, request_for(site))
            outcome = "placed"
        except Conflict as exc:
            outcome = exc.code
        with lock:
            outcomes.append(outcome)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(place, vms))
    assert outcomes.count("placed") == 11
    assert outcomes.count("NoHostAvailable") == 19, outcomes
    with db.session() as session:
        hosts = session.query(Host).all()
        assert [h.available_cpu_capacity for h in hosts] == [0, 0, 0]
        assert session.query(VmInstance).filter(VmInstance.host_uuid.is_not(None)).count() == 11
        assert_no_leaks(session, CAPACITY_CHECKS)


def test_concurrent_releases_of_one_vm_give_back_once(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm(cpu=4, memory=8 * GiB)
    with db.session() as session:
        allocate_host(session, vm, request_for(site))
    barrier = threading.Barrier(4)

    def release() -> bool:
        barrier.wait()
        with db.session() as session:
            return release_host(session, vm)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: release(), range(4)))
    assert results.count(True) == 1
    host = host_of(db, site.host)
    assert (host.available_cpu_capacity, host.available_memory_capacity) == (16, 64 * GiB)
    assert vm_of(db, vm).host_uuid is None and vm_of(db, vm).last_host_uuid == site.host
    no_leaks(db)


def test_release_is_idempotent(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm(cpu=4, memory=8 * GiB)
    with db.session() as session:
        allocate_host(session, vm, request_for(site))
    with db.session() as session:
        assert release_host(session, vm) is True
    with db.session() as session:
        assert release_host(session, vm) is False
        assert release_host(session, "no-such-vm") is False
    assert host_of(db, site.host).available_cpu_capacity == 16
    no_leaks(db)


# --- primary storage -------------------------------------------------------------------------


def test_primary_storage_reserves_the_volumes_and_gives_them_back_once(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
        root = b.volume(vm, size=10 * GiB)
        data = b.volume(vm, size=30 * GiB, type="Data", name="data")
    with db.session() as session:
        host = allocate_host(session, vm, request_for(site, disk_size=40 * GiB))
        storage = allocate_primary_storage(session, [root, data], host.uuid)
        assert storage.uuid == site.primary_storage
        assert storage.available_capacity == 1000 * GiB - 40 * GiB
    with db.session() as session:  # running the step again changes nothing
        allocate_primary_storage(session, [root, data], site.host)
        assert_no_leaks(session, CAPACITY_CHECKS)
        assert session.get(PrimaryStorage, site.primary_storage).available_capacity == 960 * GiB
    with db.session() as session:
        assert release_primary_storage(session, [root, data]) == 40 * GiB
    with db.session() as session:
        assert release_primary_storage(session, [root, data]) == 0
        assert session.get(PrimaryStorage, site.primary_storage).available_capacity == 1000 * GiB
        assert_no_leaks(session, CAPACITY_CHECKS)


def test_no_primary_storage_with_room_is_a_conflict_naming_each_storage(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
        root = b.volume(vm, size=2000 * GiB)
    with db.session() as session, pytest.raises(Conflict) as raised:
        allocate_primary_storage(session, [root], site.host)
    assert raised.value.code == "NoPrimaryStorageAvailable"
    assert "ps (" in raised.value.message and "1000 GiB free" in raised.value.message


def test_concurrent_placements_never_overfill_a_primary_storage(db):
    with building(db) as b:
        site = build_site(b)
        b.session.get(PrimaryStorage, site.primary_storage).available_capacity = 50 * GiB
        b.session.get(PrimaryStorage, site.primary_storage).total_capacity = 50 * GiB
        volumes = [b.volume(None, size=10 * GiB, type="Data", name=f"d{i}") for i in range(12)]

    def place(volume: str) -> bool:
        try:
            with db.session() as session:
                allocate_primary_storage(session, [volume], site.host)
            return True
        except Conflict:
            return False

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(place, volumes)).count(True) == 5
    no_leaks(db)


# --- VM states keep capacity exact -----------------------------------------------------------


def running_vm(db: Database, site: Site, cpu: int = 4) -> str:
    with building(db) as b:
        vm = b.vm(cpu=cpu, memory=8 * GiB, state="Created")
        b.volume(vm)
    with db.session() as session:
        started_from = begin(session, vm, "create")
        allocate_host(session, vm, request_for(site))
        finish(session, vm, "create", started_from=started_from, succeeded=True)
    return vm


def test_create_then_stop_gives_the_host_back_and_start_takes_it_again(db):
    with building(db) as b:
        site = build_site(b)
    vm = running_vm(db, site)
    assert vm_of(db, vm).state == "Running"
    assert host_of(db, site.host).available_cpu_capacity == 12
    with db.session() as session:
        started_from = begin(session, vm, "stop")
    assert host_of(db, site.host).available_cpu_capacity == 12  # Stopping still holds it
    with db.session() as session:
        finish(session, vm, "stop", started_from=started_from, succeeded=True)
    stopped = vm_of(db, vm)
    assert (stopped.state, stopped.host_uuid, stopped.last_host_uuid) == (
        "Stopped", None, site.host)
    assert host_of(db, site.host).available_cpu_capacity == 16
    no_leaks(db, CHECKS)
    with db.session() as session:
        started_from = begin(session, vm, "start")
        allocate_host(session, vm, request_for(site, host_uuid=stopped.last_host_uuid))
        finish(session, vm, "start", started_from=started_from, succeeded=True)
    assert host_of(db, site.host).available_cpu_capacity == 12
    no_leaks(db, CHECKS)


def test_a_failed_create_ends_in_error_holding_nothing(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm(cpu=4, state="Created")
    with db.session() as session:
        started_from = begin(session, vm, "create")
        allocate_host(session, vm, request_for(site))
    with db.session() as session:  # a later step failed; its rollback forgot release_host
        finish(session, vm, "create", started_from=started_from, succeeded=False)
    assert vm_of(db, vm).state == "Error" and vm_of(db, vm).host_uuid is None
    assert host_of(db, site.host).available_cpu_capacity == 16
    no_leaks(db, CHECKS)


def test_a_failed_destroy_puts_the_vm_back_on_its_host(db):
    with building(db) as b:
        site = build_site(b)
    vm = running_vm(db, site)
    with db.session() as session:
        started_from = begin(session, vm, "destroy")
    assert vm_of(db, vm).host_uuid == site.host  # the destroy still needs to know where
    assert host_of(db, site.host).available_cpu_capacity == 16
    no_leaks(db, CHECKS)
    with db.session() as session:
        finish(session, vm, "destroy", started_from=started_from, succeeded=False)
    assert vm_of(db, vm).state == "Running"
    assert host_of(db, site.host).available_cpu_capacity == 12
    no_leaks(db, CHECKS)


def test_destroy_recover_and_expunge(db):
    with building(db) as b:
        site = build_site(b)
    vm = running_vm(db, site)
    for operation, state in (("destroy", "Destroyed"), ("recover", "Stopped"),
                             ("destroy", "Destroyed")):
        with db.session() as session:
            started_from = begin(session, vm, operation)
            assert finish(session, vm, operation, started_from=started_from,
                          succeeded=True) == state
        no_leaks(db, CHECKS)
    assert host_of(db, site.host).available_cpu_capacity == 16
    with db.session() as session:
        started_from = begin(session, vm, "expunge")
        session.delete(session.get(VmInstance, vm).all_volumes[0])
        session.get(VmInstance, vm).root_volume_uuid = None
        assert finish(session, vm, "expunge", started_from=started_from,
                      succeeded=True) == "Expunged"
    assert vm_of(db, vm) is None
    no_leaks(db, CHECKS)


def test_an_operation_from_the_wrong_state_is_refused_with_409(db):
    with building(db) as b:
        site = build_site(b)
    vm = running_vm(db, site)
    with db.session() as session, pytest.raises(InvalidState) as raised:
        begin(session, vm, "start")
    assert "cannot start a VM that is Running" in raised.value.message
    with db.session() as session, pytest.raises(InvalidState, match="is Running, not Stopped"):
        change_state(session, vm, "Starting", expected=("Stopped",))
    assert vm_of(db, vm).state == "Running"


# --- backup storage --------------------------------------------------------------------------


def test_backup_storage_is_one_in_the_zone_that_holds_the_image(db):
    with building(db) as b:
        site = build_site(b)
        elsewhere = b.zone("elsewhere")
        far = b.backup_storage([elsewhere], "far")
        image = b.image([far, site.backup_storage], name="both")
    with db.session() as session:
        assert select_backup_storage(session, image, site.zone).uuid == site.backup_storage
        assert select_backup_storage(session, image, elsewhere).uuid == far


@pytest.mark.parametrize("problem, says", [
    ("not attached", "not attached to the zone"),
    ("disabled", "Disabled and Connected"),
    ("disconnected", "Enabled and Disconnected"),
    ("not on any", "no backup storage has it Ready"),
])
def test_no_usable_backup_storage_is_a_conflict_saying_why(db, problem, says):
    with building(db) as b:
        site = build_site(b)
        zones = [] if problem == "not attached" else [site.zone]
        storage = b.backup_storage(
            zones, "bs2", state="Disabled" if problem == "disabled" else "Enabled",
            status="Disconnected" if problem == "disconnected" else "Connected")
        image = b.image([] if problem == "not on any" else [storage], name="lonely")
    with db.session() as session, pytest.raises(InvalidState) as raised:
        select_backup_storage(session, image, site.zone)
    assert raised.value.code == "NoBackupStorageAvailable"
    assert "image lonely" in raised.value.message and says in raised.value.message


def test_a_missing_or_unready_image_is_refused(db):
    with building(db) as b:
        site = build_site(b)
        downloading = b.image([site.backup_storage], name="dl", status="Downloading")
    with db.session() as session:
        with pytest.raises(Exception, match="Image nope does not exist"):
            select_backup_storage(session, "nope", site.zone)
        with pytest.raises(InvalidState, match="Downloading"):
            select_backup_storage(session, downloading, site.zone)
