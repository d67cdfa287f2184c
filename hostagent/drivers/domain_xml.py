"""libvirt domain XML for a VM spec: virtio disks and NICs, ACPI, optional direct kernel boot.

The domain is named by the VM uuid (libvirt names must be unique; display names need not be)
and carries the display name as its title.
"""
from __future__ import annotations

import uuid as uuid_module
import xml.etree.ElementTree as ET
from string import ascii_lowercase

from hostagent.drivers.base import DriverError, NicSpec, VmSpec, VolumeSpec

DOMAIN_TYPES = ("kvm", "qemu")


def build_domain_xml(spec: VmSpec, domain_type: str) -> str:
    if domain_type not in DOMAIN_TYPES:
        raise DriverError(f"unsupported domain type {domain_type!r}")
    libvirt_uuid(spec.uuid)  # fail early and clearly on a uuid libvirt would reject
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = spec.uuid
    ET.SubElement(domain, "uuid").text = libvirt_uuid(spec.uuid)
    ET.SubElement(domain, "title").text = spec.name
    ET.SubElement(domain, "memory", unit="KiB").text = str(spec.memory_size // 1024)
    ET.SubElement(domain, "vcpu", placement="static").text = str(spec.cpu_num)
    _os(domain, spec)
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # without it a guest's poweroff is ignored
    ET.SubElement(features, "apic")
    if domain_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-passthrough")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"
    devices = ET.SubElement(domain, "devices")
    for volume in sorted(spec.volumes, key=lambda v: v.device_id):
        _disk(devices, volume)
    for nic in sorted(spec.nics, key=lambda n: n.device_id):
        _interface(devices, nic)
    ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(devices, "console", type="pty")
    return ET.tostring(domain, encoding="unicode")


def libvirt_uuid(value: str) -> str:
    """The dashed form libvirt prints; accepts 32 hex digits (Aerie's form) or dashed."""
    try:
        return str(uuid_module.UUID(value))
    except ValueError as exc:
        raise DriverError(f"VM uuid {value!r} is not a uuid (32 hex digits)") from exc


def disk_target(device_id: int) -> str:
    """vda, vdb, ..., vdz, vdaa, ... for device ids 0, 1, ..."""
    if device_id < 0:
        raise DriverError(f"negative deviceId {device_id}")
    name = ""
    n = device_id + 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = ascii_lowercase[rest] + name
    return "vd" + name


def _os(domain: ET.Element, spec: VmSpec) -> None:
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type").text = "hvm"
    if spec.kernel:
        ET.SubElement(os_element, "kernel").text = spec.kernel
        if spec.initrd:
            ET.SubElement(os_element, "initrd").text = spec.initrd
        if spec.cmdline:
            ET.SubElement(os_element, "cmdline").text = spec.cmdline
    else:
        ET.SubElement(os_element, "boot", dev="hd")


def _disk(devices: ET.Element, volume: VolumeSpec) -> None:
    is_block = volume.path.startswith("/dev/")
    disk = ET.SubElement(devices, "disk", type="block" if is_block else "file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=volume.format)
    ET.SubElement(disk, "source", {"dev" if is_block else "file": volume.path})
    ET.SubElement(disk, "target", dev=disk_target(volume.device_id), bus="virtio")
    ET.SubElement(disk, "serial").text = volume.uuid[:20]


def _interface(devices: ET.Element, nic: NicSpec) -> None:
    interface = ET.SubElement(devices, "interface", type="bridge")
    ET.SubElement(interface, "mac", address=nic.mac)
    ET.SubElement(interface, "source", bridge=nic.bridge)
    ET.SubElement(interface, "model", type="virtio")
