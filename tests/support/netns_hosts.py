"""Simulated KVM hosts: network namespaces with an sshd each, on a subnet of their own.

``NetnsHosts(count)`` is a context manager (or ``start()`` it and ``close()`` it). Then:

- a bridge in the root namespace holds the subnet's gateway address (``.1``); a process in a
  namespace reaches the root namespace only on that address, so a control plane the hosts
  must call listens there;
- each host is a namespace joined to the bridge by a veth pair, with its own address
  (``.10``, ``.11`` …), loopback up, and ``data0`` (one end of a veth pair inside the
  namespace: this kernel has no dummy devices) to act as a physical interface for bridges;
- each host runs ``sshd`` on port 22 with its own config and host keys in a temporary
  directory; it accepts only a throwaway user (``aerie-test-<tag>``) with a random password
  and passwordless sudo, made for this context and removed after (root's password is never
  touched).

Leaving the context (also on an exception) kills every process in each namespace, deletes
the namespaces, the bridge, the user, its sudoers file and every temporary file.

The filesystem is the machine's own: what a test installs "on a host" it must put under a
directory of its own (``NetnsHost.scratch``), which goes with the context too.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
REQUIRED_PROGRAMS = {SSHD: "openssh-server", "/usr/bin/sshpass": "sshpass",
                     "/usr/bin/sudo": "sudo", "/usr/sbin/useradd": "passwd"}
SUBNET_LOCK = Path("/run/lock/aerie-netns-hosts.lock")
SSHD_START_TIMEOUT = 10.0
FIRST_HOST_OCTET = 10

SSHD_CONFIG = """\
Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {user}
Subsystem sftp internal-sftp
"""


class NetnsUnavailable(Exception):
    """Namespace hosts cannot be made here; the message says why."""


@dataclass(frozen=True)
class NetnsHost:
    namespace: str
    address: str
    scratch: Path  # this host's own directory on the shared filesystem

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv],
                              capture_output=True, text=True, check=check)

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.namespace],
                              capture_output=True, text=True, check=False)
        return [int(pid) for pid in done.stdout.split()]


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "namespace hosts need root (ip netns, useradd, sshd)"
    for path, package in REQUIRED_PROGRAMS.items():
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt package {package}; scripts/bootstrap installs it)"
    probe = f"aerie-probe-{os.getpid()}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot make a network namespace: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsHosts:
    """``count`` namespace hosts on one new subnet; see the module docstring."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.tag = secrets.token_hex(3)
        self.username = f"aerie-test-{self.tag}"
        self.password = secrets.token_urlsafe(12)
        self.bridge = f"aeb{self.tag}"
        self.root: Path | None = None  # the hosts' directories, made by start()
        self.hosts: list[NetnsHost] = []
        self.network: ipaddress.IPv4Network | None = None
        self._sshds: list[subprocess.Popen[bytes]] = []
        self._user_made = False

    @property
    def gateway(self) -> str:
        assert self.network is not None, "start() the hosts first"
        return str(self.network.network_address + 1)

    def unused_address(self) -> str:
        """An address in the subnet that no host answers on."""
        assert self.network is not None
        return str(self.network.broadcast_address - 1)

    def __enter__(self) -> NetnsHosts:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> NetnsHosts:
        """Make the hosts; raises NetnsUnavailable (or CalledProcessError) with nothing left
        behind when it cannot."""
        self.root = Path(tempfile.mkdtemp(prefix=f"aerie-hosts-{self.tag}-"))
        try:
            self._make_user()
            self._make_subnet()
            for index in range(self.count):
                self.hosts.append(self._make_host(index))
            for host in self.hosts:
                self._start_sshd(host)
            for host in self.hosts:
                _wait_for_port(host.address, 22, SSHD_START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        return self

    # -- setup -------------------------------------------------------------------------------

    def _make_user(self) -> None:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", self.username],
                       check=True, capture_output=True)
        self._user_made = True
        subprocess.run(["chpasswd"], input=f"{self.username}:{self.password}".encode(),
                       check=True, capture_output=True)
        sudoers = self._sudoers_path()
        sudoers.write_text(f"{self.username} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)

    def _make_subnet(self) -> None:
        """Pick a 10.x.y.0/24 nobody on this machine uses, under a lock, and claim it by
        putting its gateway on the bridge before the lock is released."""
        SUBNET_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with SUBNET_LOCK.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.network = _free_subnet(os.getpid())
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")

    def _make_host(self, index: int) -> NetnsHost:
        assert self.network is not None
        namespace = f"aerie-host-{self.tag}-{index}"
        address = str(self.network.network_address + FIRST_HOST_OCTET + index)
        outer, inner = f"aev{self.tag}{index}", f"aei{self.tag}{index}"
        _ip("netns", "add", namespace)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", outer, "master", self.bridge, "up")
        _ip("link", "set", inner, "netns", namespace)
        in_ns = ("-n", namespace)
        _ip(*in_ns, "link", "set", inner, "name", "eth0")
        _ip(*in_ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*in_ns, "link", "set", "eth0", "up")
        _ip(*in_ns, "link", "set", "lo", "up")
        _ip(*in_ns, "route", "add", "default", "via", self.gateway)
        _ip(*in_ns, "link", "add", "data0", "type", "veth", "peer", "name", "data0-peer")
        _ip(*in_ns, "link", "set", "data0", "up")
        _ip(*in_ns, "link", "set", "data0-peer", "up")
        assert self.root is not None
        scratch = self.root / f"host-{index}"
        scratch.mkdir()
        return NetnsHost(namespace, address, scratch)

    def _start_sshd(self, host: NetnsHost) -> None:
        sshd_dir = host.scratch / "sshd"
        sshd_dir.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                        "-f", str(sshd_dir / "ssh_host_ed25519_key")],
                       check=True, capture_output=True)
        config = sshd_dir / "sshd_config"
        config.write_text(SSHD_CONFIG.format(address=host.address, dir=sshd_dir,
                                             user=self.username))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = (sshd_dir / "sshd.log").open("wb")
        self._sshds.append(subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, SSHD, "-D", "-e", "-f", str(config)],
            stdout=log, stderr=subprocess.STDOUT))

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts:
            _kill_all(host)
            _ip("netns", "del", host.namespace, check=False)
        for sshd in self._sshds:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sshd.wait(timeout=5)
        self.hosts.clear()
        if self.network is not None:
            _ip("link", "del", self.bridge, check=False)
            self.network = None
        if self._user_made:
            self._sudoers_path().unlink(missing_ok=True)
            subprocess.run(["userdel", "--force", "--remove", self.username],
                           capture_output=True, check=False)
            self._user_made = False
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _sudoers_path(self) -> Path:
        return Path("/etc/sudoers.d") / self.username


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(argv)}: {done.stderr.strip()}")
    return done


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    """The first 10.x.y.0/24 (x in 200..249) from a seed-chosen start that overlaps no
    address or route on this machine."""
    used = [ipaddress.ip_network(word, strict=False)
            for argv in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all"))
            for word in _ip(*argv).stdout.split()
            if word[0].isdigit() and "." in word]
    candidates = 50 * 256
    for step in range(candidates):
        number = (seed + step) % candidates
        network = ipaddress.ip_network(f"10.{200 + number // 256}.{number % 256}.0/24")
        if not any(network.overlaps(other) for other in used):
            return network
    raise NetnsUnavailable("no free 10.x.y.0/24 subnet for namespace hosts")


def _wait_for_port(address: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise NetnsUnavailable(f"sshd does not listen on {address}:{port}: "
                                       f"{exc}") from exc
            time.sleep(0.05)


def _kill_all(host: NetnsHost, grace: float = 3.0) -> None:
    """Every process in the namespace: TERM, then KILL what is left after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in host.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while host.pids() and time.monotonic() < deadline:
            time.sleep(0.05)

