"""The one interface every hypervisor driver implements, and the specs it is handed."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from hostagent.protocol import HostFacts, VmReport, VmState

DEFAULT_STOP_TIMEOUT = 30.0


class DriverError(Exception):
    """A driver could not do what was asked; the message goes back to the control plane."""


class VmNotFound(DriverError):
    def __init__(self, uuid: str) -> None:
        super().__init__(f"VM {uuid} not found on this host")
        self.uuid = uuid


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    uuid: str
    path: str
    format: str
    device_id: int


@dataclass(frozen=True, slots=True)
class DhcpSpec:
    """How the host's DHCP server for the NIC's L3 network is set up (see drivers/dhcp.py)."""
    l3_network_uuid: str
    server_ip: str
    prefix_length: int
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    dns_domain: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class NicSpec:
    uuid: str
    mac: str
    bridge: str
    device_id: int
    # Set: the bridge is made (if missing) on this interface (and VLAN) before the VM runs.
    physical_interface: str | None = None
    vlan: int | None = None
    ip: str | None = None
    # Set: this host's DHCP server for the L3 network hands ``ip`` out to ``mac``.
    dhcp: DhcpSpec | None = None

    @property
    def bridge_request(self) -> BridgeRequest | None:
        if self.physical_interface is None:
            return None
        return BridgeRequest(self.bridge, self.physical_interface, self.vlan)


@dataclass(frozen=True, slots=True)
class VmSpec:
    uuid: str
    name: str
    cpu_num: int
    memory_size: int  # bytes
    volumes: tuple[VolumeSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


IMAGE_URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """An image a volume starts from, downloaded once into ``cache_path`` (the primary
    storage's image cache) and used as the volume's backing file."""
    uuid: str
    url: str
    cache_path: str
    format: str = "qcow2"  # what the downloaded file must be, as qemu-img sees it


@dataclass(frozen=True, slots=True)
class VolumeRequest:
    path: str
    # bytes; None only with a backing file or an image (the new volume inherits its size)
    size: int | None
    format: str = "qcow2"
    backing_file: str | None = None
    image: ImageSource | None = None


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    path: str
    actual_size: int
    virtual_size: int | None = None  # set when it may differ from the requested size
    image_size: int | None = None  # the virtual size of the image it was made from


@dataclass(frozen=True, slots=True)
class BridgeRequest:
    bridge: str
    physical_interface: str | None = None
    vlan: int | None = None


class Driver(ABC):
    """A hypervisor as the agent sees it. Methods are idempotent where the commands are:
    starting a running VM, stopping a stopped one or destroying an absent one succeed."""

    name: str = "driver"

    def before_command(self, command_name: str) -> None:  # noqa: B027 - optional hook
        """Called before every command; simulators inject latency and failures here."""

    @abstractmethod
    def facts(self) -> HostFacts: ...

    @abstractmethod
    def list_vms(self) -> list[VmReport]: ...

    @abstractmethod
    def create_vm(self, spec: VmSpec, start: bool = True) -> VmState: ...

    @abstractmethod
    def start_vm(self, uuid: str) -> VmState: ...

    @abstractmethod
    def stop_vm(self, uuid: str, force: bool = False,
                timeout: float = DEFAULT_STOP_TIMEOUT) -> VmState: ...

    @abstractmethod
    def reboot_vm(self, uuid: str) -> VmState: ...

    @abstractmethod
    def destroy_vm(self, uuid: str) -> None: ...

    @abstractmethod
    def create_volume(self, request: VolumeRequest) -> VolumeInfo: ...

    @abstractmethod
    def delete_volume(self, path: str) -> None: ...

    def delete_empty_directory(self, path: str) -> None:  # noqa: B027 - optional hook
        """Remove the directory if it exists and is empty (a VM's volume folder once its
        volumes are gone); never anything in it."""

    @abstractmethod
    def setup_bridge(self, request: BridgeRequest) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default driver holds none."""
