"""Domain XML built from a vm.create spec (no libvirt needed)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hostagent.drivers.base import DriverError, NicSpec, VmSpec, VolumeSpec
from hostagent.drivers.domain_xml import build_domain_xml, disk_target, libvirt_uuid

UUID = "8c1f7a9e2b3d4c5e8f6a7b8c9d0e1f2a"
SPEC = VmSpec(
    uuid=UUID, name="web <1> & co", cpu_num=2, memory_size=128 << 20,
    volumes=(VolumeSpec("d" * 32, "/data/data.qcow2", "qcow2", 1),
             VolumeSpec("r" * 32, "/data/root.qcow2", "qcow2", 0),
             VolumeSpec("b" * 32, "/dev/vg0/lv1", "raw", 2)),
    nics=(NicSpec("n" * 32, "52:54:00:aa:bb:cc", "br_eth0", 0),),
    kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=ttyS0 root=/dev/vda")


def parse(spec: VmSpec = SPEC, domain_type: str = "kvm") -> ET.Element:
    return ET.fromstring(build_domain_xml(spec, domain_type))


def test_identity_resources_and_acpi():
    domain = parse()
    assert domain.get("type") == "kvm"
    assert domain.findtext("name") == UUID
    assert domain.findtext("uuid") == "8c1f7a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a"
    assert domain.findtext("title") == "web <1> & co"  # escaped in the XML, intact here
    assert domain.find("memory").get("unit") == "KiB"
    assert domain.findtext("memory") == str(128 * 1024)
    assert domain.findtext("vcpu") == "2"
    assert domain.find("features/acpi") is not None
    assert domain.find("cpu").get("mode") == "host-passthrough"


def test_direct_kernel_boot():
    os_element = parse().find("os")
    assert os_element.findtext("kernel") == "/boot/vmlinuz"
    assert os_element.findtext("initrd") == "/boot/initrd.img"
    assert os_element.findtext("cmdline") == "console=ttyS0 root=/dev/vda"
    assert os_element.find("boot") is None


def test_disk_boot_without_a_kernel_and_no_host_cpu_under_tcg():
    domain = parse(VmSpec(uuid=UUID, name="x", cpu_num=1, memory_size=1 << 30), "qemu")
    assert domain.get("type") == "qemu"
    assert domain.find("os/boot").get("dev") == "hd"
    assert domain.find("os/kernel") is None
    assert domain.find("cpu") is None


def test_virtio_disks_in_device_order_and_bridge_nics():
    disks = parse().findall("devices/disk")
    assert [(d.find("target").get("dev"), d.find("target").get("bus")) for d in disks] == [
        ("vda", "virtio"), ("vdb", "virtio"), ("vdc", "virtio")]
    assert disks[0].find("source").get("file") == "/data/root.qcow2"
    assert disks[0].find("driver").get("type") == "qcow2"
    assert disks[2].get("type") == "block" and disks[2].find("source").get("dev") == (
        "/dev/vg0/lv1")
    (nic,) = parse().findall("devices/interface")
    assert nic.get("type") == "bridge"
    assert nic.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert nic.find("source").get("bridge") == "br_eth0"
    assert nic.find("model").get("type") == "virtio"


def test_disk_targets_past_z():
    assert [disk_target(i) for i in (0, 1, 25, 26, 27)] == ["vda", "vdb", "vdz", "vdaa", "vdab"]


def test_bad_uuid_and_domain_type_are_rejected():
    with pytest.raises(DriverError, match="is not a uuid"):
        libvirt_uuid("vm-1")
    with pytest.raises(DriverError, match="unsupported domain type 'xen'"):
        build_domain_xml(SPEC, "xen")
