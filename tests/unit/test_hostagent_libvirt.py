"""The libvirt driver against libvirt's test driver (test:///default: real libvirt, no daemon).

test:///default is one shared in-memory hypervisor per process: every test uses fresh uuids
and undefines what it made.
"""
from __future__ import annotations

import os
import uuid

import pytest

try:
    import libvirt
except ImportError as exc:
    if os.environ.get("CI") == "true":
        raise  # CI must run these: install libvirt-dev + pkg-config, then libvirt-python
    pytest.skip(f"libvirt-python is not importable ({exc}); scripts/bootstrap installs it",
                allow_module_level=True)

from hostagent.drivers.base import DriverError, NicSpec, VmNotFound, VmSpec, VolumeSpec
from hostagent.drivers.libvirt_driver import LibvirtDriver, map_state, report_uuid, version_string
from hostagent.executor import CommandExecutor
from hostagent.protocol import VmState

URI = "test:///default"


@pytest.fixture
def driver():
    driver = LibvirtDriver(URI)
    made: list[str] = []
    driver.made = made
    yield driver
    for vm_uuid in made:
        driver.destroy_vm(vm_uuid)
    driver.close()


def new_spec(driver, **overrides) -> VmSpec:
    vm_uuid = uuid.uuid4().hex
    driver.made.append(vm_uuid)
    fields = {"uuid": vm_uuid, "name": "test vm", "cpu_num": 1, "memory_size": 64 << 20,
              "volumes": (VolumeSpec("v" * 32, "/var/lib/aerie/root.qcow2", "qcow2", 0),),
              "nics": (NicSpec("n" * 32, "52:54:00:01:02:03", "br0", 0),),
              "kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"}
    return VmSpec(**{**fields, **overrides})


def states(driver) -> dict[str, str]:
    return {vm["uuid"]: vm["state"] for vm in driver.list_vms()}


def test_define_start_stop_destroy(driver):
    spec = new_spec(driver)
    assert driver.create_vm(spec) is VmState.RUNNING
    assert states(driver)[spec.uuid] == "Running"
    assert driver.stop_vm(spec.uuid) is VmState.STOPPED
    assert states(driver)[spec.uuid] == "Stopped"
    assert driver.stop_vm(spec.uuid) is VmState.STOPPED  # already stopped: fine
    assert driver.start_vm(spec.uuid) is VmState.RUNNING
    assert driver.start_vm(spec.uuid) is VmState.RUNNING  # already running: fine
    assert driver.reboot_vm(spec.uuid) is VmState.RUNNING
    assert driver.stop_vm(spec.uuid, force=True) is VmState.STOPPED
    driver.destroy_vm(spec.uuid)
    assert spec.uuid not in states(driver)
    driver.destroy_vm(spec.uuid)  # absent: still succeeds


def test_defined_domain_matches_the_spec(driver):
    spec = new_spec(driver)
    driver.create_vm(spec, start=False)
    assert states(driver)[spec.uuid] == "Stopped"
    conn = libvirt.open(URI)
    try:
        domain = conn.lookupByName(spec.uuid)
        xml = domain.XMLDesc(0)
        assert domain.UUIDString().replace("-", "") == spec.uuid
    finally:
        conn.close()
    assert "<acpi" in xml and "<kernel>/boot/vmlinuz</kernel>" in xml
    assert "/var/lib/aerie/root.qcow2" in xml and "bus='virtio'" in xml
    assert "52:54:00:01:02:03" in xml and "<source bridge='br0'" in xml


def test_destroy_a_running_vm_undefines_it(driver):
    spec = new_spec(driver)
    driver.create_vm(spec)
    driver.destroy_vm(spec.uuid)
    assert spec.uuid not in states(driver)


def test_paused_domain_is_reported_paused_and_start_resumes_it(driver):
    spec = new_spec(driver)
    driver.create_vm(spec)
    conn = libvirt.open(URI)
    try:
        conn.lookupByName(spec.uuid).suspend()
    finally:
        conn.close()
    assert states(driver)[spec.uuid] == "Paused"
    assert driver.start_vm(spec.uuid) is VmState.RUNNING


def test_absent_vm_operations_fail_with_vm_not_found(driver):
    missing = uuid.uuid4().hex
    for operation in (driver.start_vm, driver.stop_vm, driver.reboot_vm):
        with pytest.raises(VmNotFound):
            operation(missing)


def test_a_stranger_domain_is_reported_under_its_uuid(driver):
    reported = states(driver)
    conn = libvirt.open(URI)
    try:
        stranger = conn.lookupByName("test")  # the test driver's built-in domain
        expected = stranger.UUIDString().replace("-", "")
    finally:
        conn.close()
    assert reported[expected] == "Running"


def test_facts_come_from_libvirt(driver):
    facts = driver.facts()
    conn = libvirt.open(URI)
    try:
        info = conn.getInfo()
        lib_version = conn.getLibVersion()
    finally:
        conn.close()
    assert facts["cpuNum"] == info[2]
    assert facts["memoryBytes"] == info[1] * 1024 * 1024
    assert facts["architecture"] == info[0]
    assert facts["cpuSockets"] == info[4] * info[5]
    assert facts["libvirtVersion"] == version_string(lib_version)
    assert facts["hostname"] and facts["kernel"] == os.uname().release


def test_state_mapping_covers_every_libvirt_state():
    assert map_state(libvirt.VIR_DOMAIN_RUNNING) is VmState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_BLOCKED) is VmState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_SHUTDOWN) is VmState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_PAUSED) is VmState.PAUSED
    assert map_state(libvirt.VIR_DOMAIN_PMSUSPENDED) is VmState.PAUSED
    assert map_state(libvirt.VIR_DOMAIN_SHUTOFF) is VmState.STOPPED
    assert map_state(libvirt.VIR_DOMAIN_CRASHED) is VmState.STOPPED
    assert map_state(libvirt.VIR_DOMAIN_NOSTATE) is VmState.UNKNOWN
    assert map_state(99) is VmState.UNKNOWN


def test_version_strings():
    assert version_string(9_000_000) == "9.0.0"
    assert version_string(7_002_011) == "7.2.11"


def test_graceful_stop_falls_back_to_force_after_the_timeout():
    class StubbornDomain:
        destroyed = False

        def isActive(self):  # noqa: N802 - libvirt's name
            return not self.destroyed

        def shutdown(self):
            pass  # the guest ignores ACPI

        def destroy(self):
            self.destroyed = True

        def name(self):
            return "stubborn"

        def state(self):
            return [libvirt.VIR_DOMAIN_SHUTOFF, 0]

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    stubborn = LibvirtDriver(URI, sleep=sleep, clock=lambda: now[0])
    domain = StubbornDomain()
    stubborn._lookup = lambda _uuid: domain
    try:
        assert stubborn.stop_vm("any", timeout=3) is VmState.STOPPED
    finally:
        stubborn.close()
    assert domain.destroyed and sum(slept) == pytest.approx(3.0)


def test_commands_through_the_executor(driver):
    spec = new_spec(driver)
    executor = CommandExecutor(driver)
    created = executor.execute({"id": "1", "name": "vm.create", "args": {
        "uuid": spec.uuid, "name": "x", "cpuNum": 1, "memorySize": 64 << 20,
        "volumes": [{"uuid": "v", "path": "/v/root.qcow2", "format": "qcow2", "deviceId": 0}],
        "nics": [{"uuid": "n", "mac": "52:54:00:00:00:09", "bridge": "br0", "deviceId": 0}]}})
    assert created == {"id": "1", "ok": True, "result": {"state": "Running"}, "error": None}
    stopped = executor.execute({"id": "2", "name": "vm.stop", "args": {"uuid": spec.uuid}})
    assert stopped["result"] == {"state": "Stopped"}
    bad = executor.execute({"id": "3", "name": "vm.create", "args": {
        "uuid": "not-a-uuid", "name": "x", "cpuNum": 1, "memorySize": 1 << 20}})
    assert bad["ok"] is False and "is not a uuid" in bad["error"]


def test_libvirt_errors_become_driver_errors(driver):
    bad_mac = new_spec(driver, nics=(NicSpec("n", "zz:zz", "br0", 0),))
    with pytest.raises(DriverError, match="libvirt: .*mac address 'zz:zz'"):
        driver.create_vm(bad_mac)
    assert bad_mac.uuid not in states(driver)
    assert driver.facts()["cpuNum"] > 0  # the connection is still good afterwards
    bad_uri = LibvirtDriver("test:///nonexistent/host.xml")
    with pytest.raises(DriverError, match="cannot connect to libvirt at test:///nonexistent"):
        bad_uri.facts()


def test_report_uuid_prefers_aerie_names():
    class Domain:
        def __init__(self, name, dashed):
            self._name, self._dashed = name, dashed

        def name(self):
            return self._name

        def UUIDString(self):  # noqa: N802 - libvirt's name
            return self._dashed

    dashed = "8c1f7a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a"
    assert report_uuid(Domain("8c1f7a9e2b3d4c5e8f6a7b8c9d0e1f2a", dashed)) == (
        "8c1f7a9e2b3d4c5e8f6a7b8c9d0e1f2a")
    assert report_uuid(Domain("legacy-vm", dashed)) == "8c1f7a9e2b3d4c5e8f6a7b8c9d0e1f2a"


def test_dhcp_is_set_up_before_the_domain_and_removed_with_it_even_when_absent():
    class RecordedDhcp:
        def __init__(self):
            self.calls = []

        def update_vm(self, vm_uuid, nics):
            self.calls.append(("update", vm_uuid, [n.ip for n in nics]))

        def remove_vm(self, vm_uuid):
            self.calls.append(("remove", vm_uuid))

    dhcp = RecordedDhcp()
    with_dhcp = LibvirtDriver(URI, dhcp=dhcp)
    spec = VmSpec(uuid.uuid4().hex, "dhcp vm", 1, 64 << 20,
                  nics=(NicSpec("n", "52:54:00:01:02:04", "br0", 0, ip="10.0.0.5"),))
    try:
        with_dhcp.create_vm(spec)
        with_dhcp.destroy_vm(spec.uuid)
        with_dhcp.destroy_vm(spec.uuid)  # the domain is gone: its DHCP entries go all the same
    finally:
        with_dhcp.close()
    assert dhcp.calls == [("update", spec.uuid, ["10.0.0.5"]), ("remove", spec.uuid),
                          ("remove", spec.uuid)]
