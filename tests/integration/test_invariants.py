"""The leak checker finds each kind of leak, naming the resource, and finds none after any
sequence of allocations, releases and state changes (with their rollbacks)."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import update

from chalicelib.compute.allocation import (
    HostRequest,
    allocate_host,
    allocate_primary_storage,
    release_host,
    release_primary_storage,
)
from chalicelib.compute.vm_states import begin, finish
from chalicelib.db.database import Database
from chalicelib.db.models import Host, PrimaryStorage, UsedIp, VmInstance, VmNic, Volume
from chalicelib.errors import Conflict
from chalicelib.network.ip_allocation import allocate_ip, allocate_nic, release_nic
from tests.support.datacenter import GiB, Site, build_site, building
from tests.support.invariants import assert_no_leaks, find_leaks


@pytest.fixture
def site(db) -> Site:
    with building(db) as b:
        return build_site(b)


def running_vm(db: Database, site: Site, name: str = "web") -> str:
    """A VM created the way the create flow does it: state, host, volumes, NIC."""
    with building(db) as b:
        vm = b.vm(name, cpu=2, memory=2 * GiB, state="Created")
        root = b.volume(vm, name=f"{name}-root")
    with db.session() as session:
        started_from = begin(session, vm, "create")
        host = allocate_host(session, vm, HostRequest([site.l3], disk_size=10 * GiB))
        allocate_primary_storage(session, [root], host.uuid)
        allocate_nic(session, vm, site.l3, device_id=0)
        finish(session, vm, "create", started_from=started_from, succeeded=True)
    return vm


def leaks(db: Database) -> list[str]:
    with db.session() as session:
        return find_leaks(session)


def test_a_consistent_data_center_has_no_leaks(db, site):
    running_vm(db, site, "a")
    running_vm(db, site, "b")
    with db.session() as session:
        assert_no_leaks(session)


def test_host_capacity_out_of_step_with_its_vms_is_reported(db, site):
    running_vm(db, site)
    with db.session() as session:
        session.execute(update(Host).values(available_cpu_capacity=Host.available_cpu_capacity
                                            + 2))
    found = leaks(db)
    assert len(found) == 1
    assert "Host host" in found[0] and site.host in found[0]
    assert "available CPU 16 != total 16 - 2 held by 1 VMs = 14" in found[0]


def test_a_vm_that_stopped_holding_without_giving_back_is_reported(db, site):
    vm = running_vm(db, site)
    with db.session() as session:  # a state change that bypassed vm_states
        session.execute(update(VmInstance).where(VmInstance.uuid == vm).values(state="Stopped"))
    assert any("available memory" in leak and site.host in leak for leak in leaks(db))


def test_primary_storage_out_of_step_with_its_volumes_is_reported(db, site):
    vm = running_vm(db, site)
    with db.session() as session:  # a volume deleted without giving its size back
        root = session.get(VmInstance, vm).root_volume_uuid
        session.execute(update(Volume).where(Volume.uuid == root)
                        .values(primary_storage_uuid=None))
    found = leaks(db)
    assert any(f"PrimaryStorage ps ({site.primary_storage}): available capacity" in leak
               and "held by its volumes" in leak for leak in found), found


def test_an_ip_no_nic_uses_is_reported(db, site):
    with db.session() as session:
        used = allocate_ip(session, site.l3)
        ip = used.ip
    found = leaks(db)
    assert found == [f"UsedIp {ip} ({used.uuid}) of L3 network {site.l3} is used by 0 NICs, "
                     "not 1"]


def test_an_ip_shared_by_two_nics_and_a_nic_with_a_wrong_address_are_reported(db, site):
    first, second = running_vm(db, site, "a"), running_vm(db, site, "b")
    with db.session() as session:
        shared = session.query(VmNic).filter(VmNic.vm_instance_uuid == first).one()
        other = session.query(VmNic).filter(VmNic.vm_instance_uuid == second).one()
        orphan = other.used_ip_uuid
        other.used_ip_uuid = shared.used_ip_uuid
    found = leaks(db)
    assert any("used by 2 NICs" in leak for leak in found), found
    assert any("UsedIp" in leak and orphan in leak and "used by 0 NICs" in leak
               for leak in found), found
    assert any("b-nic0" in leak and "but its UsedIp is" in leak for leak in found), found


def test_a_volume_of_an_expunged_vm_and_a_root_volume_of_no_vm_are_reported(db, site):
    vm = running_vm(db, site)
    with building(db) as b:
        stray = b.volume(None, name="stray-root")
    with db.session() as session:
        session.execute(update(VmInstance).where(VmInstance.uuid == vm)
                        .values(state="Expunged"))
    found = leaks(db)
    assert any("web-root" in leak and "is Expunged" in leak for leak in found), found
    assert any(stray in leak and "belongs to no VM" in leak for leak in found), found


def test_a_running_vm_on_no_host_is_reported(db, site):
    vm = running_vm(db, site)
    with db.session() as session:  # what a stop that lost its host on failure once left
        session.execute(update(VmInstance).where(VmInstance.uuid == vm)
                        .values(host_uuid=None))
    assert any(vm in leak and "is Running but on no host" in leak for leak in leaks(db))


def test_a_running_vm_without_its_root_volume_is_reported(db, site):
    vm = running_vm(db, site)
    with db.session() as session:
        root = session.get(VmInstance, vm).root_volume_uuid
        release_primary_storage(session, [root])
        session.get(VmInstance, vm).root_volume_uuid = None
        session.delete(session.get(Volume, root))
    assert leaks(db) == [f"VmInstance web ({vm}) is Running but has no root volume "
                         "(root_volume_uuid None)"]


def test_invariants_hold_after_any_sequence_of_allocations_releases_and_state_changes(db):
    """A seeded random walk over what flows do to VMs, rollbacks and repeats included."""
    with building(db) as b:
        site = build_site(b, cpu=6, memory=8 * GiB)
        b.host(site.cluster, "second", cpu=4, memory=8 * GiB)
        b.session.execute(update(PrimaryStorage).values(total_capacity=60 * GiB,
                                                        available_capacity=60 * GiB))
        vms = [b.vm(f"vm{i}", cpu=2, memory=2 * GiB, state="Created") for i in range(6)]
        roots = {vm: b.volume(vm, name=f"vm{vm}-root") for vm in vms}
    request = HostRequest([site.l3], disk_size=10 * GiB)
    rng = random.Random(5)

    def create(session, vm: str) -> None:
        started_from = begin(session, vm, "create")
        try:
            host = allocate_host(session, vm, request)
            allocate_primary_storage(session, [roots[vm]], host.uuid)
            allocate_nic(session, vm, site.l3, device_id=0)
            if rng.random() < 0.3:
                raise Conflict("the agent failed")  # roll back, as the flow would
        except Conflict:
            for nic in session.query(VmNic.uuid).filter(VmNic.vm_instance_uuid == vm):
                release_nic(session, nic.uuid)
            release_primary_storage(session, [roots[vm]])
            release_host(session, vm)
            release_host(session, vm)  # rollbacks may run twice
            finish(session, vm, "create", started_from=started_from, succeeded=False)
            return
        finish(session, vm, "create", started_from=started_from, succeeded=True)

    def operate(session, vm: str, operation: str) -> None:
        started_from = begin(session, vm, operation)
        if operation == "start":
            try:
                allocate_host(session, vm, request)
            except Conflict:
                finish(session, vm, operation, started_from=started_from, succeeded=False)
                return
        finish(session, vm, operation, started_from=started_from,
               succeeded=rng.random() < 0.8)

    for _ in range(120):
        vm = rng.choice(vms)
        with db.session() as session:
            state = session.get(VmInstance, vm).state
            choices = {"Created": ["create"], "Running": ["stop", "reboot", "destroy"],
                       "Stopped": ["start", "destroy"], "Destroyed": ["recover"],
                       "Error": ["destroy"]}.get(state, [])
            if not choices:
                continue
            operation = rng.choice(choices)
            if operation == "create":
                create(session, vm)
            else:
                operate(session, vm, operation)
        with db.session() as session:
            assert_no_leaks(session)
    with db.session() as session:
        states = {vm.state for vm in session.query(VmInstance)}
        assert len(states) > 1, states
        assert session.query(UsedIp).count() == session.query(VmNic).count()
