"""What this machine is: its OS release, and whether KVM can really run guests on it."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def kvm_usable(device: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether KVM can run guests here. A /dev/kvm on an x86 CPU that shows neither vmx nor
    svm cannot (guests would fail to start), so such hosts use TCG (domain type qemu)."""
    if not os.access(device, os.R_OK | os.W_OK):
        return False
    if platform.machine() not in X86_MACHINES:
        return True
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return True
    return re.search(r"^flags\s*:.*\b(vmx|svm)\b", text, re.MULTILINE) is not None


def default_domain_type(uri: str) -> str:
    if uri.startswith("test:"):
        return "qemu"
    return "kvm" if kvm_usable() else "qemu"


def os_release(path: str = "/etc/os-release") -> tuple[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    return fields.get("NAME", platform.system()), fields.get("VERSION_ID", "")
