"""A tiny BIOS-bootable guest disk for tests that boot real VMs, built from Debian packages.

The disk is an unpartitioned FAT filesystem whose boot sector is syslinux's (no partition
table, no loop device): SeaBIOS boots it, syslinux loads Debian's cloud kernel and a busybox
initramfs. The guest then:

- brings eth0 up and asks for a DHCP lease until it gets one (udhcpc), applying it with
  ``ip addr`` / ``ip route``; the serial console (``console=ttyS0``) shows
  ``aerie-guest: booted``, ``aerie-guest: lease <ip> mac <mac>`` and ``aerie-guest: poweroff``;
- serves HTTP on port 80 (busybox httpd): ``GET /`` answers ``ip=<ip> mac=<mac>\\n`` (the
  guest's own view of its lease; ``ip=`` is empty before it has one), and
  ``GET /cgi-bin/poweroff`` answers ``powering off\\n`` then powers the guest off a second
  later (``poweroff -f``: the domain needs ACPI, ``<features><acpi/></features>``);
- powers off on an ACPI power-button press too (``virsh shutdown``; busybox acpid).

Nothing is assumed about addresses: whatever MAC the NIC has and whatever IP DHCP offers.

``build_guest_image(cache_dir)`` returns a qcow2 file in ``cache_dir`` named by a digest of
everything that goes into it (kernel package version, busybox, modules, scripts, syslinux),
so it is rebuilt only when one of those changes. The kernel package is downloaded with
``apt-get download`` once per version (root; ``apt-get update`` is run if apt cannot find
it). Concurrent callers are serialised by a lock file, and every file appears by an atomic
rename. Needs: busybox-static, syslinux, mtools, dosfstools, qemu-utils (scripts/bootstrap).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hostagent.drivers.file_lock import exclusive_lock

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")  # busybox-static: no libraries to copy along
# Modules (built as =m in the cloud kernel) loaded in order, each after its dependencies:
# virtio_pci finds the virtio devices, virtio_net/virtio_blk drive them, button + evdev turn
# an ACPI power-button press into an input event busybox acpid acts on.
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "button", "evdev")
LOCK_TIMEOUT = 600  # seconds another process may hold the cache lock (a cold build: ~10 s)
REPO = Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    """``var/cache/guest-image`` in the checkout: already git-ignored, removed by ``make
    clean``, per checkout (no state outside the tree), and one path for CI to cache."""
    return REPO / "var" / "cache" / "guest-image"


INIT = """\
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "aerie-guest: booted $(uname -r)"
for module in $(cat /etc/modules); do insmod "/lib/modules/$module.ko"; done
ip link set lo up
tries=0
until [ -e /sys/class/net/eth0 ] || [ $tries -ge 100 ]; do sleep 0.1; tries=$((tries + 1)); done
ip link set eth0 up
echo "ip= mac=$(cat /sys/class/net/eth0/address)" > /www/index.html
httpd -p 80 -h /www
acpid -f -l /dev/console &
# Without -n udhcpc never gives up: 3 discovers a second apart, a second's pause, again.
udhcpc -f -i eth0 -s /etc/udhcpc.script -t 3 -T 1 -A 1 &
while true; do sleep 3600; done
"""

UDHCPC_SCRIPT = """\
#!/bin/sh
# udhcpc calls this with deconfig|bound|renew|leasefail|nak; the lease is in the environment.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do ip route add default via "$gateway" dev "$interface"; break; done
    mac=$(cat "/sys/class/net/$interface/address")
    echo "ip=$ip mac=$mac" > /www/index.new && mv /www/index.new /www/index.html
    echo "aerie-guest: lease $ip mac $mac" > /dev/console
    ;;
esac
exit 0
"""

POWEROFF = """\
#!/bin/sh
# Answers, then powers off a second later from a subshell whose stdio is not httpd's pipe (a
# function's redirections would not detach it: the response would stay open until poweroff).
printf 'Content-Type: text/plain\\r\\n\\r\\npowering off\\n'
(sleep 1; echo "aerie-guest: poweroff" > /dev/console; poweroff -f) < /dev/null > /dev/null 2>&1 &
"""

POWER_BUTTON = """\
#!/bin/sh
echo "aerie-guest: poweroff (power button)" > /dev/console
poweroff -f
"""

SYSLINUX_CFG = """\
SERIAL 0 115200
DEFAULT aerie
PROMPT 0
TIMEOUT 1
LABEL aerie
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 quiet panic=-1
"""


def build_guest_image(cache_dir: Path) -> Path:
    """The guest's qcow2 disk in ``cache_dir``: built on the first call, then reused until
    one of its inputs changes. Safe to call from several processes at once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / ".lock", LOCK_TIMEOUT, "the guest image cache"):
        kernel = _kernel(cache_dir)
        initramfs_files = _initramfs_files(kernel)
        digest = hashlib.sha256(kernel.version.encode())
        for part in (SYSLINUX_CFG.encode(), _syslinux_version().encode()):
            digest.update(part)
        for file in initramfs_files:
            digest.update(f"{file.name}:{file.mode}:{file.rdev}".encode())
            digest.update(file.data)
        image = cache_dir / f"guest-{digest.hexdigest()[:16]}.qcow2"
        if not image.exists():
            with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as work:
                built = _build_disk(Path(work), kernel.vmlinuz, _cpio_gz(initramfs_files))
                os.replace(built, image)
        return image


@dataclass(frozen=True)
class Kernel:
    version: str  # the package and its version: linux-image-6.1.0-56-cloud-amd64=6.1.192-2
    vmlinuz: Path
    modules: Path  # a directory of the MODULES and their dependencies, as <name>.ko


def _run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def _kernel_package() -> tuple[str, str]:
    """The versioned cloud kernel package the meta package depends on, and its version (one
    ``apt-cache`` call: each reads every package list, ~0.8 s)."""
    for attempt in range(2):
        try:
            shown = _run("apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE)
            break
        except RuntimeError:
            if attempt:
                raise
            _run("apt-get", "update", "-qq")  # a fresh machine may have no package lists
    # Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
    depends = re.search(r"^Depends: (linux-image-\S+-cloud-amd64) \(= ([^)\s]+)\)", shown,
                        re.MULTILINE)
    if depends is None:
        raise RuntimeError(f"no versioned kernel in {KERNEL_META_PACKAGE}'s Depends: {shown}")
    return depends.group(1), depends.group(2)


def _kernel(cache_dir: Path) -> Kernel:
    """The cloud kernel and the modules the guest loads, downloaded once per version."""
    package, version = _kernel_package()
    home = cache_dir / f"kernel-{package}_{version}"
    kernel = Kernel(f"{package}={version}", home / "vmlinuz", home / "modules")
    if home.exists():
        return kernel
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".kernel-") as work:
        work_dir = Path(work)
        _run("apt-get", "download", "-o", "APT::Sandbox::User=root", f"{package}={version}",
             cwd=work_dir)
        unpacked = work_dir / "root"
        _run("dpkg-deb", "-x", str(next(work_dir.glob("*.deb"))), str(unpacked))
        staged = work_dir / "kernel"
        (staged / "modules").mkdir(parents=True)
        shutil.copy(next((unpacked / "boot").glob("vmlinuz-*")), staged / "vmlinuz")
        found = {_module_name(path): path for path in unpacked.glob("lib/modules/*/**/*.ko")}
        for name in _load_order(MODULES, found):
            shutil.copy(found[name], staged / "modules" / f"{name}.ko")
        os.replace(staged, home)
    return kernel


def _module_name(path: Path) -> str:
    return path.name.removesuffix(".ko").replace("-", "_")


def _depends(module: Path) -> list[str]:
    match = re.search(rb"(?:^|\x00)depends=([\w,-]*)\x00", module.read_bytes())
    names = match.group(1).decode() if match else ""
    return [name.replace("-", "_") for name in names.split(",") if name]


def _load_order(wanted: tuple[str, ...], found: dict[str, Path]) -> list[str]:
    """``wanted`` with every module's dependencies before it, each once."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dependency in _depends(found[name]):
                visit(dependency)
            order.append(name)

    for name in wanted:
        visit(name)
    return order


def _syslinux_version() -> str:
    done = subprocess.run(["syslinux", "--version"], capture_output=True, text=True,
                          timeout=30)
    return (done.stdout + done.stderr).splitlines()[0]


@dataclass(frozen=True)
class CpioFile:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _initramfs_files(kernel: Kernel) -> list[CpioFile]:
    directory, executable = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755
    modules = sorted(kernel.modules.iterdir())
    order = _load_order(MODULES, {path.stem: path for path in modules})
    files = [CpioFile(name, directory) for name in (
        "bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules", "proc",
        "sys", "tmp", "run", "www", "www/cgi-bin")]
    files += [
        # The kernel opens /dev/console before /init runs, so the node must be in the archive.
        CpioFile("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioFile("bin/busybox", executable, BUSYBOX.read_bytes()),
        CpioFile("init", executable, INIT.encode()),
        CpioFile("etc/modules", stat.S_IFREG | 0o644, "\n".join(order).encode() + b"\n"),
        CpioFile("etc/udhcpc.script", executable, UDHCPC_SCRIPT.encode()),
        # busybox acpid runs /etc/acpi/PWRF/00000080 on a power-button press.
        CpioFile("etc/acpi/PWRF/00000080", executable, POWER_BUTTON.encode()),
        CpioFile("www/cgi-bin/poweroff", executable, POWEROFF.encode()),
    ]
    files += [CpioFile(f"lib/modules/{path.name}", stat.S_IFREG | 0o644, path.read_bytes())
              for path in modules]
    return files


def _cpio_gz(files: list[CpioFile]) -> bytes:
    """A gzipped newc cpio archive (what the kernel unpacks as its initramfs), reproducible:
    every timestamp is 0 and every file root's."""
    archive = bytearray()

    def pad() -> None:
        archive.extend(b"\0" * (-len(archive) % 4))

    for inode, file in enumerate([*files, CpioFile("TRAILER!!!", 0)], start=1):
        name = file.name.encode() + b"\0"
        fields = (inode, file.mode, 0, 0, 1, 0, len(file.data), 0, 0, *file.rdev, len(name), 0)
        archive.extend(b"070701" + b"".join(b"%08X" % field for field in fields) + name)
        pad()
        archive.extend(file.data)
        pad()
    return gzip.compress(bytes(archive), compresslevel=9, mtime=0)


def _build_disk(work: Path, vmlinuz: Path, initramfs: bytes) -> Path:
    """A FAT filesystem image holding syslinux, the kernel and the initramfs, whose first
    sector boots syslinux (SeaBIOS boots an unpartitioned disk), converted to qcow2."""
    (work / "initrd.gz").write_bytes(initramfs)
    (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
    payload = vmlinuz.stat().st_size + len(initramfs)
    size_kib = (payload // (1 << 20) + 3) * 1024  # whole MiB with ≥ 2 MiB to spare
    raw = work / "disk.raw"
    _run("mkfs.vfat", "-C", "-n", "AERIE", "-i", "AE1E0001", str(raw), str(size_kib))
    _run("mcopy", "-i", str(raw), str(vmlinuz), "::vmlinuz")
    _run("mcopy", "-i", str(raw), str(work / "initrd.gz"), str(work / "syslinux.cfg"), "::")
    _run("syslinux", "--install", str(raw))
    qcow2 = work / "disk.qcow2"
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    return qcow2
