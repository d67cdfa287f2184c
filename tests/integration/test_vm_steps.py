"""Single VM flow steps against the database: what their rollbacks leave."""
from __future__ import annotations

from chalicelib.compute import vm_states
from chalicelib.compute.allocation import HostRequest, allocate_host
from chalicelib.compute.vm_steps import ReleaseHostCapacity
from chalicelib.db.models import Host, VmInstance
from chalicelib.flows import StepEnv
from tests.support.datacenter import build_site, building
from tests.support.invariants import CAPACITY_CHECKS, assert_no_leaks


def test_a_stop_that_fails_after_releasing_the_host_puts_the_vm_back_on_it(db):
    with building(db) as b:
        build_site(b)
        vm = b.vm()
    with db.session() as session:
        vm_states.change_state(session, vm, "Starting")
        host = allocate_host(session, vm, HostRequest(host_uuid=None)).uuid
        vm_states.change_state(session, vm, "Running")
    env = StepEnv(session=db.session, agents=None)
    ctx = {"vmUuid": vm, "hostUuid": host}
    with db.session() as session:
        started_from = vm_states.begin(session, vm, "stop")
    step = ReleaseHostCapacity()
    step.run(ctx, env)
    step.rollback(ctx, env)
    step.rollback(ctx, env)  # idempotent
    with db.session() as session:
        vm_states.finish(session, vm, "stop", started_from=started_from, succeeded=False)
    with db.session() as session:
        again = session.get(VmInstance, vm)
        assert (again.state, again.host_uuid) == ("Running", host)
        held = session.get(Host, host)
        assert held.available_memory_capacity == held.total_memory_capacity - again.memory_size
        assert_no_leaks(session, CAPACITY_CHECKS)  # this VM was made without volumes
