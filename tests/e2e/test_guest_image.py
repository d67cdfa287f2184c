"""The test guest disk (tests/support/guest_image.py) on its own, without the control plane:
it boots under qemu (TCG), takes its lease from dnsmasq, says what it got over HTTP and powers
itself off when asked.

Two network namespaces of this test's own: "host" holds a bridge with the guest's tap and
one end of a veth pair; "dhcp" holds the other end (10.0.0.1/24) and dnsmasq, which knows the
guest by its MAC only. HTTP requests to the guest go from the dhcp namespace, across the
bridge.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.guest_image import build_guest_image, default_cache_dir

IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.slow

TOOLS = ("ip", "qemu-system-x86_64", "qemu-img", "dnsmasq", "busybox", "syslinux", "mcopy",
         "mkfs.vfat", "apt-get", "dpkg-deb")
GUEST_MAC = "52:54:00:a5:00:05"
GUEST_IP = "10.0.0.5"
DHCP_IP = "10.0.0.1"
BOOT_TIMEOUT = 90  # to the lease; ~4 s on an idle 2-core machine under TCG
POWEROFF_TIMEOUT = 15  # the guest waits 1 s before powering off
GET = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
"""


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true must boot the test guest: {reason}")
    pytest.skip(reason)


def run(*command: str, timeout: float = 30) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr.strip()}"
    return done.stdout


def wait_for(predicate: Callable[[], bool], within: float, what: str, step: float = 0.1,
             log: Path | None = None) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            serial = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(f"{what}: not within {within}s\n{serial}")
        time.sleep(step)
    return time.monotonic() - started


@dataclass
class Network:
    host: str  # namespace: bridge, the guest's tap, qemu
    dhcp: str  # namespace: dnsmasq, the HTTP client


def make_network(stack: ExitStack) -> Network:
    network = Network(f"aerie-gi-host-{os.getpid()}", f"aerie-gi-dhcp-{os.getpid()}")
    for namespace in (network.host, network.dhcp):
        made = subprocess.run(["ip", "netns", "add", namespace], capture_output=True,
                              text=True, timeout=10)
        if made.returncode != 0:
            unavailable(f"cannot make a network namespace: {made.stderr.strip()}")
        stack.callback(subprocess.run, ["ip", "netns", "del", namespace], timeout=10)
    host, dhcp = ("ip", "-n", network.host), ("ip", "-n", network.dhcp)
    for command in (
            (*host, "link", "set", "lo", "up"),
            (*dhcp, "link", "set", "lo", "up"),
            (*host, "link", "add", "br0", "type", "bridge"),
            (*host, "link", "add", "veth-br", "type", "veth", "peer", "name", "veth-dhcp",
             "netns", network.dhcp),
            (*host, "link", "set", "veth-br", "master", "br0", "up"),
            (*host, "tuntap", "add", "dev", "tap0", "mode", "tap"),
            (*host, "link", "set", "tap0", "master", "br0", "up"),
            (*host, "link", "set", "br0", "up"),
            (*dhcp, "addr", "add", f"{DHCP_IP}/24", "dev", "veth-dhcp"),
            (*dhcp, "link", "set", "veth-dhcp", "up")):
        run(*command)
    return network


def start(stack: ExitStack, command: list[str], output: Path) -> subprocess.Popen:
    with output.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)

    def end() -> None:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)

    stack.callback(end)
    return process


def start_dnsmasq(stack: ExitStack, network: Network, tmp_path: Path) -> Path:
    leases = tmp_path / "dnsmasq.leases"
    dnsmasq = start(stack, [
        "ip", "netns", "exec", network.dhcp, "dnsmasq", "--keep-in-foreground",
        "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0", "--user=root",
        "--interface=veth-dhcp", "--bind-interfaces", "--dhcp-authoritative",
        f"--dhcp-range={DHCP_IP},static,255.255.255.0", f"--dhcp-host={GUEST_MAC},{GUEST_IP}",
        f"--dhcp-leasefile={leases}", "--log-dhcp", "--log-facility=-", "--pid-file="],
        tmp_path / "dnsmasq.log")
    time.sleep(0.2)
    assert dnsmasq.poll() is None, (tmp_path / "dnsmasq.log").read_text()
    return leases


def get(network: Network, path: str) -> str:
    """The guest's answer to GET ``path``, asked from the dhcp namespace."""
    done = subprocess.run(["ip", "netns", "exec", network.dhcp, sys.executable, "-c", GET,
                           f"http://{GUEST_IP}{path}"], capture_output=True, text=True,
                          timeout=15)
    assert done.returncode == 0, f"GET {path}: {done.stderr.strip()[-500:]}"
    return done.stdout


def answers(network: Network) -> bool:
    try:
        get(network, "/")
    except AssertionError:
        return False
    return True


def build_twice_at_once(cache_dir: Path) -> list[Path]:
    """Two concurrent builds into one empty cache: both must get the same, whole image."""
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(build_guest_image(cache_dir)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.fixture
def prerequisites() -> None:
    if os.geteuid() != 0:
        unavailable("booting the test guest needs root (network namespaces, taps, apt-get)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        unavailable(f"missing {', '.join(missing)} (scripts/bootstrap installs them)")


def build_and_measure(cache: Path) -> tuple[Path, str]:
    """The image from the shared cache (the one the other end-to-end tests use; the kernel
    is downloaded there if needed), then built again cold in ``cache`` holding only that
    kernel, by two callers at once, then asked for once more (cached). Returns the image
    built cold and the timings."""
    shared_cache = default_cache_dir()
    images_before = set(shared_cache.glob("guest-*.qcow2"))
    kernels_before = set(shared_cache.glob("kernel-*"))
    started = time.monotonic()
    shared = build_guest_image(shared_cache)
    shared_in = time.monotonic() - started
    how = ("cached" if shared in images_before else
           "built" if set(shared_cache.glob("kernel-*")) == kernels_before else
           "built, the kernel downloaded")

    cache.mkdir()
    for kernel in shared_cache.glob("kernel-*"):
        shutil.copytree(kernel, cache / kernel.name)
    started = time.monotonic()
    built = build_twice_at_once(cache)
    cold_in = time.monotonic() - started
    assert len(built) == 2 and built[0] == built[1], built
    image = built[0]
    assert image.name == shared.name  # the same inputs, the same image
    assert [path.name for path in cache.glob("guest-*")] == [image.name]
    assert not list(cache.glob(".build-*")) and not list(cache.glob(".kernel-*"))
    started = time.monotonic()
    assert build_guest_image(cache) == image
    cached_in = time.monotonic() - started
    run("qemu-img", "check", str(image))
    return image, (f"guest image {image.stat().st_size / (1 << 20):.1f} MiB: shared cache "
                   f"{shared_in:.2f}s ({how}); cold build (kernel already downloaded, two "
                   f"callers at once) {cold_in:.2f}s; cached {cached_in:.2f}s")


def test_the_guest_boots_takes_its_lease_and_powers_off_when_asked(prerequisites, tmp_path):
    serial = tmp_path / "serial.log"
    with ExitStack() as stack:
        # The big files go whatever happens; the logs stay in pytest's tmp_path.
        cache, overlay = tmp_path / "cache", tmp_path / "root.qcow2"
        stack.callback(shutil.rmtree, cache, ignore_errors=True)
        stack.callback(overlay.unlink, missing_ok=True)
        image, build_timings = build_and_measure(cache)
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image),
            str(overlay))

        network = make_network(stack)
        leases = start_dnsmasq(stack, network, tmp_path)
        qemu = start(stack, [
            "ip", "netns", "exec", network.host, "qemu-system-x86_64", "-accel", "tcg",
            "-machine", "pc", "-m", "128", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{serial}",
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac={GUEST_MAC}"],
            tmp_path / "qemu.log")

        def leased() -> bool:
            assert qemu.poll() is None, (tmp_path / "qemu.log").read_text()
            return leases.exists() and f"{GUEST_MAC} {GUEST_IP}" in leases.read_text()

        lease_in = wait_for(leased, BOOT_TIMEOUT, "dnsmasq leased the guest its IP", log=serial)
        answered_in = wait_for(lambda: answers(network), 30, "the guest answered HTTP",
                               step=0.2, log=serial)
        log = serial.read_text(errors="replace")
        assert "aerie-guest: booted" in log
        assert f"aerie-guest: lease {GUEST_IP} mac {GUEST_MAC}" in log
        assert get(network, "/") == f"ip={GUEST_IP} mac={GUEST_MAC}\n"

        asked = time.monotonic()
        assert get(network, "/cgi-bin/poweroff") == "powering off\n"
        assert qemu.wait(timeout=POWEROFF_TIMEOUT) == 0
        off_in = time.monotonic() - asked
        log = serial.read_text(errors="replace")
        assert "aerie-guest: poweroff" in log and "reboot: Power down" in log

    print(f"\n{build_timings}\nqemu started to lease {lease_in:.2f}s, to HTTP "
          f"{lease_in + answered_in:.2f}s; poweroff asked to qemu exited {off_in:.2f}s")
