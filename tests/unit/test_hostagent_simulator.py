"""The simulator driver: capacity, latency, injected failures, crashes, scale, persistence."""
from __future__ import annotations

import time

import pytest

from hostagent.agent import Agent
from hostagent.drivers.base import (
    BridgeRequest,
    DhcpSpec,
    DriverError,
    ImageSource,
    NicSpec,
    VmSpec,
    VolumeRequest,
)
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.executor import CommandExecutor
from hostagent.memory_transport import MemoryTransport
from hostagent.protocol import VmState

GIB = 1 << 30


def spec(uuid: str, cpu: int = 1, memory: int = GIB) -> VmSpec:
    return VmSpec(uuid=uuid, name=uuid, cpu_num=cpu, memory_size=memory)


def test_memory_capacity_is_enforced_for_running_vms_only():
    sim = SimulatorDriver(cpu_num=4, memory_bytes=3 * GIB)
    sim.create_vm(spec("a", memory=2 * GIB))
    with pytest.raises(DriverError, match="insufficient memory.*1073741824 are free"):
        sim.create_vm(spec("b", memory=2 * GIB))
    assert sim.vms["b"].state is VmState.STOPPED  # defined, not started
    sim.stop_vm("a")
    assert sim.start_vm("b") is VmState.RUNNING


def test_cpu_capacity_allows_the_configured_overcommit():
    sim = SimulatorDriver(cpu_num=2, cpu_overcommit=2.0)
    sim.create_vm(spec("a", cpu=3))
    with pytest.raises(DriverError, match="insufficient CPU"):
        sim.create_vm(spec("b", cpu=2))
    assert sim.create_vm(spec("c", cpu=1)) is VmState.RUNNING


def test_fail_command_a_number_of_times():
    sim = SimulatorDriver()
    executor = CommandExecutor(sim)
    sim.fail_command("ping", error="disk on fire", times=2)
    results = [executor.execute({"id": str(i), "name": "ping", "args": {}}) for i in range(3)]
    assert [r["error"] for r in results] == ["disk on fire", "disk on fire", None]
    sim.fail_command("ping")
    assert all(not executor.execute({"id": f"x{i}", "name": "ping", "args": {}})["ok"]
               for i in range(5))
    sim.clear_failures()
    assert executor.execute({"id": "y", "name": "ping", "args": {}})["ok"]


def test_random_failures_follow_the_probability_and_the_seed():
    def outcomes(seed: int) -> list[bool]:
        executor = CommandExecutor(SimulatorDriver(failure_probability=0.3, seed=seed))
        return [executor.execute({"id": str(i), "name": "ping", "args": {}})["ok"]
                for i in range(400)]

    first = outcomes(42)
    assert first == outcomes(42)  # reproducible
    assert first != outcomes(43)
    failure_rate = first.count(False) / len(first)
    assert 0.2 < failure_rate < 0.4


def test_latency_is_spent_per_command():
    slept: list[float] = []
    sim = SimulatorDriver(latency=0.25, sleep=slept.append)
    executor = CommandExecutor(sim)
    for i in range(3):
        executor.execute({"id": str(i), "name": "ping", "args": {}})
    assert slept == [0.25, 0.25, 0.25]


def test_crash_vm_stops_a_running_vm_only():
    sim = SimulatorDriver()
    sim.create_vm(spec("a"))
    sim.crash_vm("a")
    assert sim.list_vms() == [{"uuid": "a", "state": "Stopped"}]
    with pytest.raises(DriverError, match="only a running VM can crash"):
        sim.crash_vm("a")
    with pytest.raises(DriverError, match="not found"):
        sim.crash_vm("nope")


def test_state_file_keeps_the_hypervisor_across_restarts(tmp_path):
    path = tmp_path / "sim.json"
    sim = SimulatorDriver(state_path=path)
    sim.create_vm(spec("a"))
    sim.create_vm(spec("b"), start=False)
    sim.create_volume(VolumeRequest("/vols/a.qcow2", GIB))
    sim.setup_bridge(BridgeRequest("br_eth1", "eth1"))
    restarted = SimulatorDriver(state_path=path)
    assert restarted.list_vms() == [{"uuid": "a", "state": "Running"},
                                    {"uuid": "b", "state": "Stopped"}]
    assert restarted.vms["a"].spec == spec("a")
    assert restarted.volumes == {"/vols/a.qcow2": VolumeRequest("/vols/a.qcow2", GIB)}
    assert restarted.bridges == {"br_eth1": BridgeRequest("br_eth1", "eth1")}


def test_dhcp_nics_and_image_volumes_are_kept_across_restarts_and_go_with_the_vm(tmp_path):
    path = tmp_path / "sim.json"
    sim = SimulatorDriver(state_path=path)
    dhcp = DhcpSpec("l3", "10.0.0.2", 24, "10.0.0.1", ("8.8.8.8",), None, "web")
    nics = (NicSpec("n", "fa:16:3e:00:00:01", "br_eth0", 0, "eth0", None, "10.0.0.9", dhcp),
            NicSpec("m", "fa:16:3e:00:00:02", "br_eth1", 1))
    sim.create_vm(VmSpec("a", "a", 1, GIB, nics=nics))
    image = ImageSource("img", "http://images/img.qcow2", "/ps/imagecache/img.qcow2")
    sim.create_volume(VolumeRequest("/ps/root.qcow2", None, image=image))
    restarted = SimulatorDriver(state_path=path)
    assert restarted.vms["a"].spec.nics == nics
    assert restarted.volumes["/ps/root.qcow2"].image == image
    assert restarted.dhcp_hosts("l3") == {"fa:16:3e:00:00:01": "10.0.0.9"}
    restarted.destroy_vm("a")
    assert restarted.dhcp_hosts("l3") == {}


def test_ten_thousand_simulated_hosts_are_cheap():
    started = time.perf_counter()
    hosts = []
    for i in range(10_000):
        driver = SimulatorDriver(cpu_num=16, memory_bytes=64 * GIB, hostname=f"sim-{i}")
        transport = MemoryTransport(ping_interval=60)
        hosts.append((Agent(driver, transport, sleep=lambda _s: None), transport))
    built = time.perf_counter() - started
    for i, (agent, transport) in enumerate(hosts):
        transport.push("vm.create", {"uuid": f"vm-{i}", "name": "v", "cpuNum": 1,
                                     "memorySize": GIB})
        agent.step()
    elapsed = time.perf_counter() - started
    assert built < 2.0, f"building 10,000 hosts took {built:.2f} s"
    assert elapsed < 5.0, f"10,000 hosts took {elapsed:.2f} s to build and sync"
    agent, transport = hosts[9_999]
    assert transport.reports[0]["facts"]["hostname"] == "sim-9999"
    assert transport.results == [{"id": "cmd-1", "ok": True, "result": {"state": "Running"},
                                  "error": None}]
