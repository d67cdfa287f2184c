"""dnsmasq as the DHCP and DNS server of one L3 network: its files, and its process.

It answers the VMs' host names (and ``name.<domain>``) from a hosts file of its own, so a
name is there as soon as its VM is listed, leased or not. A lease puts its name in the DNS
too, for as long as dnsmasq keeps it: hence ``held_leases``. Names in the domain that it does
not know, and plain names, are not forwarded.

dnsmasq drops root for ``nobody`` once started, and reads its hosts files (at start and on
SIGHUP) as ``nobody``: every folder above those files must be searchable by others.
"""
from __future__ import annotations

import os
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from hostagent.drivers.base import DriverError
from hostagent.drivers.shell import Runner, run

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
LEASE_TIME = "1h"  # short: a NIC whose address changed gets the new one within half of it
STOP_TIMEOUT_SECONDS = 5.0
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class HostEntry:
    mac: str
    ip: str
    hostname: str | None = None

    def line(self) -> str:
        fields = [self.mac.lower(), self.ip] + ([self.hostname] if self.hostname else [])
        return ",".join(fields)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What one L3 network's DHCP server hands out besides the addresses."""
    server_ip: str
    prefix_length: int
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    dns_domain: str | None = None


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """One DHCP server's files, all in one folder of the agent's state dir."""
    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "dnsmasq.conf"

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def dns_hosts(self) -> Path:
        return self.directory / "dns-hosts"

    @property
    def leases(self) -> Path:
        return self.directory / "leases"

    @property
    def pid(self) -> Path:
        return self.directory / "dnsmasq.pid"

    @property
    def log(self) -> Path:
        return self.directory / "dnsmasq.log"


def render_conf(settings: ServerSettings, interface: str, files: ServerFiles) -> str:
    network = IPv4Interface(f"{settings.server_ip}/{settings.prefix_length}").network
    lines = [
        "# Written by aerie-agent; rewritten whenever the L3 network's settings change.",
        f"interface={interface}",
        "bind-dynamic",  # its own interface only, and survives that interface's readdressing
        "except-interface=lo",
        "no-resolv",
        "no-hosts",
        f"addn-hosts={files.dns_hosts}",
        "domain-needed",
        "dhcp-ignore-names",  # a VM cannot claim a name in the DNS by asking for it
        "dhcp-authoritative",
        f"dhcp-range={network.network_address},static,{network.netmask},{LEASE_TIME}",
        f"dhcp-hostsfile={files.hosts}",
        f"dhcp-leasefile={files.leases}",
        f"pid-file={files.pid}",
        f"log-facility={files.log}",
        f"dhcp-option=option:dns-server,{settings.server_ip}",
        *(f"server={upstream}" for upstream in settings.dns),
    ]
    if settings.gateway:
        lines.append(f"dhcp-option=option:router,{settings.gateway}")
    if settings.dns_domain:
        lines += [f"domain={settings.dns_domain}", f"local=/{settings.dns_domain}/"]
    return "\n".join(lines) + "\n"


def render_hosts(entries: Iterable[HostEntry]) -> str:
    """One ``mac,ip[,hostname]`` line per entry (the DHCP hosts file)."""
    return "".join(entry.line() + "\n" for entry in _current(entries))


def render_dns_hosts(entries: Iterable[HostEntry], domain: str | None) -> str:
    """One ``ip name.domain name`` line per named entry (or ``ip name`` without a domain); a
    name that a later entry claims again is that entry's."""
    named = {entry.hostname: entry.ip for entry in _current(entries) if entry.hostname}
    return "".join(f"{ip} {name}.{domain} {name}\n" if domain else f"{ip} {name}\n"
                   for name, ip in named.items())


def held_leases(leases: str, entries: Iterable[HostEntry]) -> str:
    """The lines of a leases file (``expiry mac ip name|* client-id|*``) that an entry still
    holds: its MAC and address, and a name only if it has one. dnsmasq keeps any other lease
    until it expires: in the DNS under its name, and its address from the next VM given it."""
    named = {(entry.mac.lower(), entry.ip): bool(entry.hostname) for entry in _current(entries)}
    kept = []
    for line in leases.splitlines(keepends=True):
        fields = line.split()
        if len(fields) >= 4:
            has_name = named.get((fields[1].lower(), fields[2]))
            if has_name or (has_name is False and fields[3] == "*"):
                kept.append(line)
    return "".join(kept)


def _current(entries: Iterable[HostEntry]) -> list[HostEntry]:
    """The entries, less those whose address or MAC a later entry claims again (a VM
    destroyed while this host could not hear of it may still be listed with an address the
    control plane has since given to another VM)."""
    ordered = list(entries)
    owner_of_ip = {entry.ip: entry for entry in ordered}
    owner_of_mac = {entry.mac.lower(): entry for entry in ordered}
    return [entry for entry in ordered
            if owner_of_ip[entry.ip] is entry and owner_of_mac[entry.mac.lower()] is entry]


class Dnsmasq:
    """dnsmasq processes: started in a network namespace, found again by their pid file (and
    their command line, so a recycled pid is not mistaken for one), signalled, stopped."""

    def __init__(self, runner: Runner = run, *, search_path: str = SEARCH_PATH,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self._run = runner
        self._executable = shutil.which("dnsmasq", path=search_path)
        self._sleep = sleep

    def start(self, netns: str, files: ServerFiles) -> int:
        if self._executable is None:
            raise DriverError("dnsmasq is not installed on this host; flat networks' DHCP "
                              "needs it (Debian: apt-get install dnsmasq-base)")
        _check_searchable(files.directory)
        self._run(["ip", "netns", "exec", netns, self._executable, f"--conf-file={files.conf}"])
        pid = self.find(files)  # the daemon has written its pid file by the time start returns
        if pid is None:
            raise DriverError(f"dnsmasq did not start in namespace {netns}; see {files.log}")
        return pid

    def find(self, files: ServerFiles) -> int | None:
        try:
            pid = int(files.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _runs_with(pid, f"--conf-file={files.conf}") else None

    def reload(self, pid: int) -> None:
        """Re-read the hosts files."""
        _signal(pid, signal.SIGHUP)

    def stop(self, pid: int, files: ServerFiles) -> None:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            _signal(pid, signum)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            while self.find(files) == pid:
                if time.monotonic() >= deadline:
                    break
                self._sleep(POLL_SECONDS)
            else:
                return
        raise DriverError(f"dnsmasq (pid {pid}) did not stop")


def _runs_with(pid: int, argument: str) -> bool:
    """The process exists (not a zombie) and has ``argument`` on its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return argument.encode() in cmdline.split(b"\0")


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _check_searchable(directory: Path) -> None:
    for folder in [directory, *directory.resolve().parents]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise DriverError(f"dnsmasq runs as nobody and must read files in {directory}, "
                              f"but {folder} is not searchable by others (chmod o+x it, or "
                              "give the agent another --state-dir)")
