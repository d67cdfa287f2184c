"""A real `aerie-agent` on libvirt's real qemu driver (a libvirtd of the test's own), against a
real `aerie up`: a domain killed directly in libvirt shows as a Stopped VM within about one
report interval."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid

import pytest

from chalicelib.agents import commands
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand, Host, VmInstance
from tests.support.agent_process import Client, agent_log, control_plane, start_agent, stop
from tests.support.libvirtd import LIBVIRTD, QEMU, Libvirtd, LibvirtdUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.slow

REPORT_INTERVAL = 1  # host.ping.interval, seconds
SLACK = 4  # a busy 2-core machine: a report's round trip, libvirt's list, the poll below
MIB = 1024 * 1024


@pytest.fixture
def libvirtd():
    daemon = Libvirtd()
    try:
        try:
            daemon.start()
        except LibvirtdUnavailable as exc:
            if IN_CI:
                pytest.fail(f"CI=true needs libvirtd with the qemu driver: {exc}")
            pytest.skip(f"libvirtd with the qemu driver cannot run here: {exc}")
        yield daemon
    finally:
        daemon.stop()


def wait_for(predicate, within: float, what: str, step: float = 0.05) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < within, f"{what}: not within {within}s"
        time.sleep(step)
    return time.monotonic() - started


def installed_version(program: str) -> str:
    """``9.0.0`` from ``libvirtd (libvirt) 9.0.0``, ``7.2.22`` from ``QEMU emulator version
    7.2.22 (Debian …)``."""
    output = subprocess.run([program, "--version"], capture_output=True, text=True,
                            check=True).stdout
    return re.search(r"(\d+\.\d+\.\d+)", output).group(1)


def vm_state(db: Database, vm_uuid: str) -> str:
    # There is no VmInstance API yet (GET /v1/vm-instances/{uuid} comes with
    # CreateVmInstance), so the test reads the control plane's own database.
    with db.session() as session:
        return session.get(VmInstance, vm_uuid).state


def test_killing_a_domain_in_libvirt_stops_the_vm_within_one_report(libvirtd, tmp_path):
    import libvirt

    with control_plane(tmp_path) as plane:
        api = Client(plane.url)
        zone = api.do("POST", "/v1/zones", {"name": "z"})["uuid"]
        cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
        api.do("PUT", "/v1/global-configurations/host/ping.interval",
               {"value": REPORT_INTERVAL})
        host = api.do("POST", "/v1/hosts/kvm", {
            "clusterUuid": cluster, "name": "kvm-1", "managementIp": "127.0.0.1",
            "deployAgent": False})
        db = Database(f"sqlite:///{tmp_path / 'cp.db'}")
        conn = libvirtd.connect()
        # TCG: /dev/kvm cannot run guests on CI's machines.
        agent = start_agent(plane.url, host, tmp_path, libvirt_uri=libvirtd.uri,
                            extra_args=("--domain-type", "qemu"))
        try:
            api.wait_status(host["uuid"], "Connected", within=20)
            seen = api.host(host["uuid"])
            # Facts from the qemu driver: this machine's CPUs, libvirt's and qemu's versions.
            assert seen["cpuNum"] == conn.getInfo()[2] > 0
            assert seen["libvirtVersion"] == installed_version(LIBVIRTD)
            assert seen["qemuVersion"] == installed_version(QEMU)

            # The VM: there is no CreateVmInstance API yet, so the test records the VM as
            # that operation would (Starting, on this host), asks the agent to create it
            # with a `vm.create` command queued in the database (there is no API that sends
            # one; commands.send is how the control plane queues every command), and marks
            # it Running once the agent says it runs.
            vm_uuid = uuid.uuid4().hex
            with db.session() as session:
                account = session.get(Host, host["uuid"]).account_uuid
                session.add(VmInstance(
                    uuid=vm_uuid, name="vm-1", account_uuid=account, zone_uuid=zone,
                    cluster_uuid=cluster, host_uuid=host["uuid"], last_host_uuid=host["uuid"],
                    hypervisor_type="KVM", state="Starting", cpu_num=1, memory_size=64 * MIB))
                command = commands.send(session, host["uuid"], "vm.create", {
                    "uuid": vm_uuid, "name": "vm-1", "cpuNum": 1, "memorySize": 64 * MIB})

            def finished() -> AgentCommand | None:
                with db.session() as session:
                    found = session.get(AgentCommand, command)
                    return found if found.state in ("Succeeded", "Failed") else None

            wait_for(finished, 20, "vm.create answered", step=0.1)
            created = finished()
            assert created.state == "Succeeded", (created.error, agent_log(tmp_path))
            assert json.loads(created.result) == {"state": "Running"}
            domain = conn.lookupByName(vm_uuid)  # named by the VM uuid
            assert domain.UUIDString().replace("-", "") == vm_uuid
            assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            with db.session() as session:
                session.get(VmInstance, vm_uuid).state = "Running"

            # Two full reports later the VM is still Running: the agent reports it, under
            # Aerie's uuid (not as a stranger), in the state it really is in.
            reports = {api.host(host["uuid"])["lastReportDate"]}

            def two_more_reports() -> bool:
                reports.add(api.host(host["uuid"])["lastReportDate"])
                return len(reports) > 2

            wait_for(two_more_reports, 2 * REPORT_INTERVAL + SLACK, "two reports")
            assert vm_state(db, vm_uuid) == "Running"
            assert vm_uuid not in (api.host(host["uuid"])["strangerVmUuids"] or "")

            # Kill it in libvirt, behind Aerie's back.
            destroy_called = time.monotonic()
            domain.destroy()
            destroyed = time.monotonic()
            assert not domain.isActive()
            stopped_in = wait_for(lambda: vm_state(db, vm_uuid) == "Stopped",
                                  REPORT_INTERVAL + SLACK, "VM Stopped in the database")
            total = time.monotonic() - destroy_called
            # The change was announced: every event is logged by `aerie up`.
            wait_for(lambda: "vm.state.changed" in plane.output(), 2, "the event logged")
            event = next(line for line in plane.output().splitlines()
                         if "vm.state.changed" in line)
            assert vm_uuid in event and "'to': 'Stopped'" in event and "'by': 'sync'" in event
        finally:
            stop(agent)
            conn.close()
            db.dispose()
    print(f"\nVM Stopped in the database {stopped_in:.2f}s after libvirt destroyed the "
          f"domain (destroy() itself took {destroyed - destroy_called:.2f}s, "
          f"{total:.2f}s in all; report interval {REPORT_INTERVAL}s)")
