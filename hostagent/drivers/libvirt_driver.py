"""A real hypervisor through libvirt-python: ``qemu:///system``, ``qemu:///embed?root=DIR``
(the qemu driver inside this process) or ``test:///default`` (libvirt's test driver)."""
from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import libvirt

from hostagent.drivers.base import (
    DEFAULT_STOP_TIMEOUT,
    BridgeRequest,
    Driver,
    DriverError,
    VmNotFound,
    VmSpec,
    VolumeInfo,
    VolumeRequest,
)
from hostagent.drivers.dhcp import DhcpServers
from hostagent.drivers.domain_xml import build_domain_xml, libvirt_uuid
from hostagent.drivers.host_probe import default_domain_type, os_release
from hostagent.drivers.linux_bridge import LinuxBridges
from hostagent.drivers.qemu_img import QemuImg
from hostagent.drivers.shell import Runner, run
from hostagent.protocol import HostFacts, VmReport, VmState

log = logging.getLogger(__name__)

STATE_MAP: dict[int, VmState] = {
    libvirt.VIR_DOMAIN_NOSTATE: VmState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: VmState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VmState.RUNNING,  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: VmState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VmState.RUNNING,  # shutting down, still running
    libvirt.VIR_DOMAIN_SHUTOFF: VmState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: VmState.STOPPED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VmState.PAUSED,
}
STOP_POLL_SECONDS = 0.5

# libvirt prints every error to stderr by default; the agent reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
_event_loop_lock = threading.Lock()
_event_loop_started = False


def map_state(libvirt_state: int) -> VmState:
    return STATE_MAP.get(libvirt_state, VmState.UNKNOWN)


def version_string(version: int) -> str:
    """libvirt packs versions as major * 1,000,000 + minor * 1,000 + release."""
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


def report_uuid(domain: libvirt.virDomain) -> str:
    """The uuid a domain is reported under: its name for Aerie's domains (named by the VM
    uuid), else its libvirt uuid as 32 hex digits, so strangers are reported too."""
    name, dashed = domain.name(), domain.UUIDString()
    if name.replace("-", "").lower() == dashed.replace("-", ""):
        return name
    return dashed.replace("-", "")


def has_host_network(uri: str) -> bool:
    """Whether the driver at ``uri`` runs VMs on this host's network (bridges, DHCP servers):
    libvirt's test driver has none to change."""
    return not uri.startswith("test:")


def start_event_loop() -> None:
    """The embedded qemu driver needs libvirt's event loop running in this process."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LibvirtDriver(Driver):
    name = "libvirt"

    def __init__(self, uri: str = "qemu:///system", *, domain_type: str | None = None,
                 runner: Runner = run, sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 dhcp: DhcpServers | None = None) -> None:
        """``dhcp``: the host's DHCP servers, for NICs that ask for one; without it, they
        get none here."""
        self.uri = uri
        self.domain_type = domain_type or default_domain_type(uri)
        self._sleep = sleep
        self._clock = clock
        self._conn: libvirt.virConnect | None = None
        self._volumes = QemuImg(runner)
        self._bridges = LinuxBridges(runner)
        self._dhcp = dhcp

    # -- facts and state ---------------------------------------------------------------------

    def facts(self) -> HostFacts:
        with self._libvirt() as conn:
            model, memory_mib, cpus, _mhz, nodes, sockets, _cores, _threads = conn.getInfo()
            os_name, os_version = os_release()
            return {"cpuNum": cpus, "cpuSockets": nodes * sockets,
                    "memoryBytes": memory_mib * 1024 * 1024, "os": os_name,
                    "osVersion": os_version, "kernel": platform.release(),
                    "libvirtVersion": version_string(conn.getLibVersion()),
                    "qemuVersion": version_string(conn.getVersion()),
                    "architecture": model, "hostname": conn.getHostname()}

    def list_vms(self) -> list[VmReport]:
        with self._libvirt() as conn:
            reports: list[VmReport] = []
            for domain in conn.listAllDomains(0):
                try:
                    reports.append({"uuid": report_uuid(domain),
                                    "state": map_state(domain.state()[0]).value})
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise  # a domain undefined while listing is simply gone
            return reports

    # -- VM lifecycle ------------------------------------------------------------------------

    def create_vm(self, spec: VmSpec, start: bool = True) -> VmState:
        xml = build_domain_xml(spec, self.domain_type)
        if self._dhcp is not None:
            self._dhcp.update_vm(spec.uuid, spec.nics)  # before the guest asks for a lease
        with self._libvirt() as conn:
            domain = conn.defineXML(xml)
            if start and not domain.isActive():
                domain.create()
            return map_state(domain.state()[0])

    def start_vm(self, uuid: str) -> VmState:
        with self._libvirt():
            domain = self._require(uuid)
            state = domain.state()[0]
            if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
                domain.resume()
            elif not domain.isActive():
                domain.create()
            return map_state(domain.state()[0])

    def stop_vm(self, uuid: str, force: bool = False,
                timeout: float = DEFAULT_STOP_TIMEOUT) -> VmState:
        with self._libvirt():
            domain = self._require(uuid)
            if not domain.isActive():
                return VmState.STOPPED
            if not force and self._shut_down(domain, timeout):
                return VmState.STOPPED
            try:
                domain.destroy()
            except libvirt.libvirtError:
                if domain.isActive():
                    raise
            return map_state(domain.state()[0])

    def reboot_vm(self, uuid: str) -> VmState:
        with self._libvirt():
            domain = self._require(uuid)
            if not domain.isActive():
                domain.create()
            else:
                try:
                    domain.reboot(0)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        raise
                    domain.destroy()
                    domain.create()
            return map_state(domain.state()[0])

    def destroy_vm(self, uuid: str) -> None:
        with self._libvirt():
            domain = self._lookup(uuid)
            if domain is not None:
                try:
                    if domain.isActive():
                        domain.destroy()
                    self._undefine(domain)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
        if self._dhcp is not None:  # also when the domain was gone: a create that failed
            self._dhcp.remove_vm(uuid)

    # -- storage and network -------------------------------------------------------------------

    def create_volume(self, request: VolumeRequest) -> VolumeInfo:
        return self._volumes.create(request)

    def delete_volume(self, path: str) -> None:
        self._volumes.delete(path)

    def delete_empty_directory(self, path: str) -> None:
        self._volumes.delete_empty_directory(path)

    def setup_bridge(self, request: BridgeRequest) -> str:
        if not has_host_network(self.uri):
            return request.bridge
        return self._bridges.setup(request)

    def close(self) -> None:
        if self._conn is not None:
            with suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _libvirt(self) -> Iterator[libvirt.virConnect]:
        """The live connection, reopened if it died; libvirt errors become DriverErrors."""
        conn = self._connection()
        try:
            yield conn
        except libvirt.libvirtError as exc:
            if not self._alive(conn):
                self.close()
            raise DriverError(f"libvirt: {exc.get_error_message() or exc}") from exc

    def _connection(self) -> libvirt.virConnect:
        if self._conn is not None and self._alive(self._conn):
            return self._conn
        self.close()
        if "embed" in self.uri.split("?")[0]:
            start_event_loop()
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot connect to libvirt at {self.uri}: "
                              f"{exc.get_error_message() or exc}") from exc
        return self._conn

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _lookup(self, uuid: str) -> libvirt.virDomain | None:
        conn = self._connection()
        try:
            return conn.lookupByName(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        try:
            return conn.lookupByUUIDString(libvirt_uuid(uuid))
        except (libvirt.libvirtError, DriverError):
            return None

    def _require(self, uuid: str) -> libvirt.virDomain:
        domain = self._lookup(uuid)
        if domain is None:
            raise VmNotFound(uuid)
        return domain

    def _shut_down(self, domain: libvirt.virDomain, timeout: float) -> bool:
        """Ask the guest to power off (ACPI); True if it did within ``timeout`` seconds."""
        try:
            domain.shutdown()
        except libvirt.libvirtError:
            return not domain.isActive()
        deadline = self._clock() + timeout
        while domain.isActive():
            if self._clock() >= deadline:
                log.warning("VM %s did not shut down within %.0f s; forcing it off",
                            domain.name(), timeout)
                return False
            self._sleep(STOP_POLL_SECONDS)
        return True

    @staticmethod
    def _undefine(domain: libvirt.virDomain) -> None:
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        try:
            domain.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                            libvirt.VIR_ERR_INVALID_ARG):
                raise
            domain.undefine()
