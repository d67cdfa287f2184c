"""What the agent finds out about its machine: OS release, and whether KVM can run guests."""
from __future__ import annotations

import platform

import pytest

from hostagent.drivers.host_probe import default_domain_type, kvm_usable, os_release


def test_os_release_reads_name_and_version(tmp_path):
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                       'VERSION_ID="12"\n# comment\n')
    assert os_release(str(release)) == ("Debian GNU/Linux", "12")
    assert os_release(str(tmp_path / "absent")) == (platform.system(), "")


def test_no_kvm_device_means_tcg(tmp_path):
    assert kvm_usable(device=str(tmp_path / "no-kvm")) is False
    assert default_domain_type("test:///default") == "qemu"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "i686"), reason="x86 CPU flags")
def test_x86_kvm_needs_vmx_or_svm(tmp_path):
    device = tmp_path / "kvm"
    device.write_text("")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 lm\n")
    assert kvm_usable(str(device), str(cpuinfo)) is False
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse2\n")
    assert kvm_usable(str(device), str(cpuinfo)) is True
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu svm sse2\n")
    assert kvm_usable(str(device), str(cpuinfo)) is True
