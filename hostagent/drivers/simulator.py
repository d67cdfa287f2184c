"""A simulated host: VMs, volumes and bridges in memory, with capacity, latency and failures.

Plain objects, no threads: a process can hold tens of thousands of them. With ``state_path``
the simulated hypervisor survives an agent restart, as a real one would.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hostagent.drivers.base import (
    DEFAULT_STOP_TIMEOUT,
    BridgeRequest,
    DhcpSpec,
    Driver,
    DriverError,
    ImageSource,
    NicSpec,
    VmNotFound,
    VmSpec,
    VolumeInfo,
    VolumeRequest,
    VolumeSpec,
)
from hostagent.files import read_json, write_json_atomic
from hostagent.protocol import HostFacts, VmReport, VmState

GIB = 1 << 30
QCOW2_EMPTY_SIZE = 196_608  # what a fresh qcow2 file occupies: header, L1 and refcount tables
SIMULATED_IMAGE_SIZE = 2 * GIB  # an image's size when a volume made from it names none


@dataclass(slots=True)
class SimulatedVm:
    spec: VmSpec
    state: VmState


@dataclass(slots=True)
class InjectedFailure:
    error: str
    remaining: int | None  # None: every time


class SimulatorDriver(Driver):
    name = "simulator"

    def __init__(self, *, cpu_num: int = 32, memory_bytes: int = 128 * GIB,
                 cpu_overcommit: float = 10.0, hostname: str = "simulator",
                 latency: float = 0.0, failure_probability: float = 0.0,
                 seed: int | None = None, sleep: Callable[[float], Any] = time.sleep,
                 state_path: Path | None = None) -> None:
        self.cpu_num = cpu_num
        self.memory_bytes = memory_bytes
        self.cpu_overcommit = cpu_overcommit
        self.hostname = hostname
        self.latency = latency
        self.failure_probability = failure_probability
        self._rng = random.Random(seed) if failure_probability else None
        self._seed = seed
        self._sleep = sleep
        self._state_path = state_path
        self.vms: dict[str, SimulatedVm] = {}
        self.volumes: dict[str, VolumeRequest] = {}
        self.bridges: dict[str, BridgeRequest] = {}
        self.failures: dict[str, InjectedFailure] = {}
        self.command_counts: dict[str, int] = {}
        if state_path is not None:
            self._load(state_path)

    # -- fault injection -------------------------------------------------------------------

    def fail_command(self, command_name: str, error: str | None = None,
                     times: int | None = None) -> None:
        """Make ``command_name`` fail, ``times`` times or (None) until cleared."""
        message = error or f"simulator: injected failure of {command_name}"
        self.failures[command_name] = InjectedFailure(message, times)

    def clear_failures(self) -> None:
        self.failures.clear()

    def set_failure_probability(self, probability: float, seed: int | None = None) -> None:
        self.failure_probability = probability
        self._rng = random.Random(self._seed if seed is None else seed)

    def crash_vm(self, uuid: str) -> None:
        """A running VM stops on its own, as if its guest or its qemu crashed."""
        vm = self._vm(uuid)
        if vm.state is not VmState.RUNNING:
            raise DriverError(f"VM {uuid} is {vm.state}, only a running VM can crash")
        vm.state = VmState.STOPPED
        self._save()

    def before_command(self, command_name: str) -> None:
        self.command_counts[command_name] = self.command_counts.get(command_name, 0) + 1
        if self.latency:
            self._sleep(self.latency)
        failure = self.failures.get(command_name)
        if failure is not None:
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self.failures[command_name]
            raise DriverError(failure.error)
        if self._rng is not None and self._rng.random() < self.failure_probability:
            raise DriverError(f"simulator: random failure of {command_name} "
                              f"(p={self.failure_probability})")

    # -- the hypervisor ----------------------------------------------------------------------

    def facts(self) -> HostFacts:
        return {"cpuNum": self.cpu_num, "cpuSockets": 1, "memoryBytes": self.memory_bytes,
                "os": "Simulator", "osVersion": "1", "kernel": "simulated",
                "libvirtVersion": "9.0.0", "qemuVersion": "7.2.0",
                "architecture": "x86_64", "hostname": self.hostname}

    def list_vms(self) -> list[VmReport]:
        return [{"uuid": uuid, "state": vm.state.value} for uuid, vm in self.vms.items()]

    def create_vm(self, spec: VmSpec, start: bool = True) -> VmState:
        existing = self.vms.get(spec.uuid)
        if existing is None:
            self.vms[spec.uuid] = SimulatedVm(spec, VmState.STOPPED)
        else:
            existing.spec = spec
        return self.start_vm(spec.uuid) if start else self._saved(self.vms[spec.uuid].state)

    def start_vm(self, uuid: str) -> VmState:
        vm = self._vm(uuid)
        if vm.state is not VmState.RUNNING:
            if vm.state is not VmState.PAUSED:
                self._check_capacity(vm.spec)
            vm.state = VmState.RUNNING
        return self._saved(vm.state)

    def stop_vm(self, uuid: str, force: bool = False,
                timeout: float = DEFAULT_STOP_TIMEOUT) -> VmState:
        vm = self._vm(uuid)
        vm.state = VmState.STOPPED
        return self._saved(vm.state)

    def reboot_vm(self, uuid: str) -> VmState:
        return self.start_vm(uuid)

    def destroy_vm(self, uuid: str) -> None:
        if self.vms.pop(uuid, None) is not None:
            self._save()

    def create_volume(self, request: VolumeRequest) -> VolumeInfo:
        existing = self.volumes.get(request.path)
        if existing is not None and existing != request:
            raise DriverError(f"volume {request.path} already exists with different "
                              "size, format or backing file")
        self.volumes[request.path] = request
        self._save()
        if request.image is None:
            return VolumeInfo(request.path, QCOW2_EMPTY_SIZE)
        # Nothing is downloaded: the simulated image is as large as the volume asked for.
        size = SIMULATED_IMAGE_SIZE if request.size is None else request.size
        return VolumeInfo(request.path, QCOW2_EMPTY_SIZE, virtual_size=size, image_size=size)

    def delete_volume(self, path: str) -> None:
        if self.volumes.pop(path, None) is not None:
            self._save()

    def setup_bridge(self, request: BridgeRequest) -> str:
        self.bridges[request.bridge] = request
        self._save()
        return request.bridge

    def dhcp_hosts(self, l3_network_uuid: str) -> dict[str, str]:
        """MAC -> IP that a real host's DHCP server would hand out on the L3 network: the
        simulator serves no DHCP, it only keeps the VMs' specs that ask for it."""
        return {nic.mac: nic.ip for vm in self.vms.values() for nic in vm.spec.nics
                if nic.dhcp is not None and nic.dhcp.l3_network_uuid == l3_network_uuid
                and nic.ip is not None}

    # -- internals ---------------------------------------------------------------------------

    def _vm(self, uuid: str) -> SimulatedVm:
        vm = self.vms.get(uuid)
        if vm is None:
            raise VmNotFound(uuid)
        return vm

    def _check_capacity(self, spec: VmSpec) -> None:
        running = [vm.spec for vm in self.vms.values()
                   if vm.state is not VmState.STOPPED and vm.spec.uuid != spec.uuid]
        free = self.memory_bytes - sum(s.memory_size for s in running)
        if spec.memory_size > free:
            raise DriverError(f"insufficient memory to start VM {spec.uuid}: it needs "
                              f"{spec.memory_size} bytes, {free} are free")
        cpus = sum(s.cpu_num for s in running) + spec.cpu_num
        if cpus > self.cpu_num * self.cpu_overcommit:
            raise DriverError(f"insufficient CPU to start VM {spec.uuid}: {cpus} vCPUs would "
                              f"exceed {self.cpu_num} x {self.cpu_overcommit}")

    def _saved(self, state: VmState) -> VmState:
        self._save()
        return state

    def _save(self) -> None:
        if self._state_path is None:
            return
        write_json_atomic(self._state_path, {
            "vms": [{"spec": asdict(vm.spec), "state": vm.state.value}
                    for vm in self.vms.values()],
            "volumes": [asdict(v) for v in self.volumes.values()],
            "bridges": [asdict(b) for b in self.bridges.values()],
        })

    def _load(self, path: Path) -> None:
        data = read_json(path) or {}
        for entry in data.get("vms", []):
            spec = dict(entry["spec"])
            spec["volumes"] = tuple(VolumeSpec(**v) for v in spec["volumes"])
            spec["nics"] = tuple(_nic_spec(n) for n in spec["nics"])
            self.vms[spec["uuid"]] = SimulatedVm(VmSpec(**spec), VmState(entry["state"]))
        for entry in data.get("volumes", []):
            image = entry.get("image")
            self.volumes[entry["path"]] = VolumeRequest(
                **{**entry, "image": ImageSource(**image) if image else None})
        for entry in data.get("bridges", []):
            self.bridges[entry["bridge"]] = BridgeRequest(**entry)


def _nic_spec(saved: dict[str, Any]) -> NicSpec:
    dhcp = saved.get("dhcp")
    if dhcp:
        dhcp = DhcpSpec(**{**dhcp, "dns": tuple(dhcp["dns"])})
    return NicSpec(**{**saved, "dhcp": dhcp})
