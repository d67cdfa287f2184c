"""Volumes through qemu-img and bridges through ip link: the commands they run, and (when
qemu-img is installed) real qcow2 files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostagent.drivers.base import BridgeRequest, DriverError, VolumeRequest
from hostagent.drivers.linux_bridge import LinuxBridges
from hostagent.drivers.qemu_img import QemuImg
from hostagent.drivers.shell import CommandFailed, run

HAS_QEMU_IMG = shutil.which("qemu-img") is not None


class FakeIp:
    """`ip link` over a set of existing interfaces, recording every call."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = set(existing)
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        if argv[:3] == ["ip", "link", "show"]:
            if argv[-1] not in self.existing:
                raise CommandFailed(argv, 1, f'Device "{argv[-1]}" does not exist.')
        elif argv[:3] == ["ip", "link", "add"]:
            self.existing.add(argv[argv.index("name") + 1])
        return ""


def test_bridge_is_created_brought_up_and_given_its_interface():
    ip = FakeIp({"eth1"})
    assert LinuxBridges(ip).setup(BridgeRequest("br_eth1", "eth1")) == "br_eth1"
    assert ip.calls == [
        ["ip", "link", "show", "dev", "br_eth1"],
        ["ip", "link", "add", "name", "br_eth1", "type", "bridge"],
        ["ip", "link", "set", "dev", "br_eth1", "up"],
        ["ip", "link", "set", "dev", "eth1", "master", "br_eth1"],
        ["ip", "link", "set", "dev", "eth1", "up"],
    ]


def test_existing_bridge_is_not_added_again_and_vlan_gets_a_subinterface():
    ip = FakeIp({"eth1", "br_eth1_10"})
    LinuxBridges(ip).setup(BridgeRequest("br_eth1_10", "eth1", 10))
    adds = [c for c in ip.calls if c[:3] == ["ip", "link", "add"]]
    assert adds == [["ip", "link", "add", "link", "eth1", "name", "eth1.10", "type", "vlan",
                     "id", "10"]]
    assert ["ip", "link", "set", "dev", "eth1.10", "master", "br_eth1_10"] in ip.calls


def test_bridge_without_interface_and_bad_names():
    ip = FakeIp(set())
    LinuxBridges(ip).setup(BridgeRequest("br_local"))
    assert ip.calls[-1] == ["ip", "link", "set", "dev", "br_local", "up"]
    with pytest.raises(DriverError, match="invalid interface name"):
        LinuxBridges(ip).setup(BridgeRequest("a_bridge_name_too_long"))


def test_run_reports_missing_tools_and_failures_by_name():
    with pytest.raises(CommandFailed, match="no-such-tool-here failed: .*not installed"):
        run(["no-such-tool-here"])
    with pytest.raises(CommandFailed, match="sh failed: boom"):
        run(["sh", "-c", "echo boom >&2; exit 3"])
    assert run(["sh", "-c", "echo hi"]) == "hi\n"


def test_qemu_img_command_line_with_a_backing_file(tmp_path):
    calls: list[list[str]] = []

    def fake(argv):
        argv = list(argv)
        calls.append(argv)
        if argv[1] == "info":
            return '{"format": "raw"}'
        Path(argv[-2] if argv[-1].isdigit() else argv[-1]).write_bytes(b"x")
        return ""

    target = tmp_path / "vols" / "new.qcow2"
    info = QemuImg(fake).create(VolumeRequest(str(target), None, "qcow2", "/images/base.raw"))
    assert calls[0] == ["qemu-img", "info", "-U", "--output=json", "/images/base.raw"]
    assert calls[1] == ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/images/base.raw",
                        "-F", "raw", str(target.with_name(".new.qcow2.creating"))]
    assert target.exists() and info.path == str(target) and info.actual_size > 0


def test_qemu_img_rejects_unknown_formats_and_sizeless_volumes(tmp_path):
    with pytest.raises(DriverError, match="unsupported volume format 'vmdk'"):
        QemuImg(lambda argv: "").create(VolumeRequest(str(tmp_path / "a"), 1, "vmdk"))
    with pytest.raises(DriverError, match="needs a size"):
        QemuImg(lambda argv: "").create(VolumeRequest(str(tmp_path / "a"), None))


def test_delete_is_fine_when_absent_and_refuses_directories(tmp_path):
    volume = tmp_path / "v.qcow2"
    volume.write_bytes(b"data")
    QemuImg().delete(str(volume))
    assert not volume.exists()
    QemuImg().delete(str(volume))
    with pytest.raises(DriverError, match="is a directory"):
        QemuImg().delete(str(tmp_path))


def test_a_file_where_the_volume_directory_should_be_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    volume = str(blocker / "vms" / "vm-1" / "root.qcow2")
    with pytest.raises(DriverError, match=f"cannot create directory {blocker}/vms/vm-1 for "
                                          "volume .*: Not a directory"):
        QemuImg(lambda argv: "").create(VolumeRequest(volume, 1 << 20))
    QemuImg().delete(volume)  # what cannot exist is absent: a rollback's delete succeeds
    assert blocker.read_text() == "in the way"


@pytest.mark.skipif(not HAS_QEMU_IMG and os.environ.get("CI", "").lower() != "true",
                    reason="qemu-img is not installed (scripts/bootstrap installs qemu-utils; "
                           "under CI=true this test must run)")
def test_real_qcow2_create_is_idempotent_and_checks_the_existing_file(tmp_path):
    images = QemuImg()
    base = images.create(VolumeRequest(str(tmp_path / "base.qcow2"), 64 << 20))
    again = images.create(VolumeRequest(str(tmp_path / "base.qcow2"), 64 << 20))
    assert again.path == base.path and base.actual_size > 0
    assert images.info(base.path)["virtual-size"] == 64 << 20
    with pytest.raises(DriverError, match="already exists with size 67108864"):
        images.create(VolumeRequest(str(tmp_path / "base.qcow2"), 128 << 20))
    child = images.create(VolumeRequest(str(tmp_path / "child.qcow2"), None, "qcow2",
                                        base.path))
    child_info = images.info(child.path)
    assert child_info["virtual-size"] == 64 << 20
    assert child_info["full-backing-filename"] == base.path
    assert not list(tmp_path.glob(".*.creating"))


REAL_BRIDGE_SCRIPT = """
from hostagent.drivers.base import BridgeRequest
from hostagent.drivers.linux_bridge import LinuxBridges
bridges = LinuxBridges()
print(bridges.setup(BridgeRequest("br_vethA", "vethA")))
print(bridges.setup(BridgeRequest("br_vethA", "vethA")))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a real bridge needs root (and unshare, for a private netns)")
def test_real_bridge_in_a_private_network_namespace():
    script = ("ip link add vethA type veth peer name vethB && "
              f"{sys.executable} -c '{REAL_BRIDGE_SCRIPT}' && ip -o link show vethA")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                          text=True, timeout=30, cwd=Path(__file__).resolve().parents[2])
    if "Operation not permitted" in done.stderr:
        if os.environ.get("CI", "").lower() == "true":  # CI's machine makes namespaces
            pytest.fail(f"CI=true must run the real bridge test: {done.stderr.strip()}")
        pytest.skip(f"cannot make a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["br_vethA", "br_vethA"]
    assert "master br_vethA" in lines[2]


def test_a_vms_emptied_volume_folder_goes_but_one_with_files_stays(tmp_path):
    from hostagent.drivers.qemu_img import QemuImg

    emptied, busy = tmp_path / "vm-1", tmp_path / "vm-2"
    emptied.mkdir()
    busy.mkdir()
    (busy / "other.qcow2").write_bytes(b"")
    volumes = QemuImg()
    volumes.delete_empty_directory(str(emptied))
    volumes.delete_empty_directory(str(busy))
    volumes.delete_empty_directory(str(tmp_path / "never-was"))
    assert not emptied.exists() and (busy / "other.qcow2").exists()
