"""Flat-network DHCP and DNS: one dnsmasq per L3 network on each host, in a network namespace
of its own, handing each VM NIC the address the control plane gave it, and answering the VMs'
host names (forwarding other names to the L3 network's DNS servers) on the server's address.

A NIC in ``vm.create`` / ``vm.start`` args asks for it with a ``dhcp`` object; the NIC's
``ip`` is the address handed out to its ``mac``::

    {"uuid": …, "mac": "fa:16:3e:00:00:01", "bridge": "br_eth0", "deviceId": 0,
     "ip": "10.0.0.23",
     "dhcp": {"l3NetworkUuid": "<uuid>",        # the server is per L3 network
              "serverIp": "10.0.0.2",           # the server's own address (allocated once
              "prefixLength": 24,               #   per L3 network by the control plane)
              "gateway": "10.0.0.1",            # DHCP option router; null: none
              "dns": ["8.8.8.8"],               # where other names are forwarded; [] or
                                                #   absent: only the VMs' names are answered
              "dnsDomain": "corp.example",      # option domain-name, and the VMs' names are
                                                #   also answered in it; null: none
              "hostname": "web-1"}}             # option hostname for this NIC, and its name
                                                #   in the DNS; null: none

On the host, for agent ``<host>`` (its uuid) and L3 network ``<l3>``:

- network namespace ``aerie-dhcp-<first 8 characters of host>-<l3>``;
- a veth pair: ``adh<12 hex digits>`` (a digest of host and L3 uuids, so 15 characters at
  most, as Linux requires) in the host's namespace, enslaved to the NIC's bridge, and
  ``dhcp0`` in the server's namespace, holding ``serverIp/prefixLength``, with a default
  route through ``gateway`` (if any) to reach the DNS servers it forwards to;
- dnsmasq in that namespace, serving DHCP only to the listed MACs and DNS (port 53) on
  ``serverIp``, which the VMs get as their DNS server; its files in
  ``<state dir>/<host>.dhcp/<l3>/``: ``dnsmasq.conf``, ``hosts`` (``mac,ip[,hostname]``) and
  ``dns-hosts`` (``ip hostname.dnsDomain hostname``), both re-read on SIGHUP, ``leases``,
  ``dnsmasq.pid``, ``dnsmasq.log``, and ``vms.json``, the index of which VM asked for which
  entries.

Every call converges on what the index says, so it is idempotent and picks up after a
crash or an agent restart (the running dnsmasq is found by its pid file; a missing
namespace, veth, address, route or process is made again). dnsmasq is restarted when its
configuration changed, or to forget a lease no entry holds any more (a removed VM's, whose
name it would otherwise answer, and whose address it would refuse to the next VM given it,
until the lease expired); otherwise a SIGHUP has it re-read its hosts files. When the last
VM of a network goes, its dnsmasq, veth pair, namespace and folder go too.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hostagent.drivers.base import DriverError, NicSpec
from hostagent.drivers.dnsmasq import (
    Dnsmasq,
    HostEntry,
    ServerFiles,
    ServerSettings,
    held_leases,
    render_conf,
    render_dns_hosts,
    render_hosts,
)
from hostagent.drivers.file_lock import exclusive_lock
from hostagent.drivers.linux_bridge import check_interface_name
from hostagent.drivers.shell import CommandFailed, Runner, run
from hostagent.files import read_json, write_json_atomic

SERVER_INTERFACE = "dhcp0"
LOCK_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class DhcpServer:
    """Where one L3 network's DHCP server lives on this host."""
    l3_network_uuid: str
    netns: str
    veth: str  # the host's end of the pair
    files: ServerFiles

    @property
    def index(self) -> Path:
        return self.files.directory / "vms.json"


@dataclass
class ServerIndex:
    """Which VM asked for which entries, and the network's settings as last asked for."""
    settings: ServerSettings
    bridge: str
    vms: dict[str, list[HostEntry]] = field(default_factory=dict)

    def entries(self) -> Iterator[HostEntry]:
        for vm_entries in self.vms.values():
            yield from vm_entries

    def to_json(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "bridge": self.bridge,
                "vms": {vm: [asdict(e) for e in entries] for vm, entries in self.vms.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerIndex:
        settings = data["settings"]
        return cls(ServerSettings(**{**settings, "dns": tuple(settings["dns"])}), data["bridge"],
                   {vm: [HostEntry(**e) for e in entries] for vm, entries in data["vms"].items()})


@dataclass(frozen=True, slots=True)
class _Wanted:
    settings: ServerSettings
    bridge: str
    entries: list[HostEntry]


class DhcpServers:
    """The DHCP servers of one agent's host."""

    def __init__(self, state_dir: Path, host_uuid: str, runner: Runner = run,
                 dnsmasq: Dnsmasq | None = None) -> None:
        self.host_uuid = host_uuid
        self.root = state_dir / f"{host_uuid}.dhcp"
        self._run = runner
        self._dnsmasq = dnsmasq if dnsmasq is not None else Dnsmasq(runner)

    def server(self, l3_network_uuid: str) -> DhcpServer:
        digest = hashlib.sha256(f"{self.host_uuid}/{l3_network_uuid}".encode()).hexdigest()
        return DhcpServer(l3_network_uuid, f"aerie-dhcp-{self.host_uuid[:8]}-{l3_network_uuid}",
                          f"adh{digest[:12]}", ServerFiles(self.root / l3_network_uuid))

    def update_vm(self, vm_uuid: str, nics: Sequence[NicSpec]) -> None:
        """Serve the VM's NICs that ask for DHCP, and only those: entries the VM had on
        other networks are removed."""
        wanted = _wanted_by_network(nics)
        if not wanted and not self._networks():
            return  # nothing served, nothing to serve: no lock, no folder
        with self._locked():
            for l3 in self._networks() - wanted.keys():
                self._remove(self.server(l3), vm_uuid)
            for l3, want in wanted.items():
                self._add(self.server(l3), vm_uuid, want)

    def remove_vm(self, vm_uuid: str) -> None:
        if not self._networks():
            return
        with self._locked():
            for l3 in self._networks():
                self._remove(self.server(l3), vm_uuid)

    # -- one network -------------------------------------------------------------------------

    def _add(self, server: DhcpServer, vm_uuid: str, want: _Wanted) -> None:
        index = self._read(server) or ServerIndex(want.settings, want.bridge)
        index.settings, index.bridge = want.settings, want.bridge
        index.vms.pop(vm_uuid, None)  # re-listed last: its entries win any clash (render_hosts)
        index.vms[vm_uuid] = want.entries
        write_json_atomic(server.index, index.to_json())
        self._converge(server, index)

    def _remove(self, server: DhcpServer, vm_uuid: str) -> None:
        index = self._read(server)
        if index is None:
            self._tear_down(server)
            return
        if vm_uuid not in index.vms:
            return
        del index.vms[vm_uuid]
        if not index.vms:
            self._tear_down(server)
            return
        write_json_atomic(server.index, index.to_json())
        self._converge(server, index)

    def _converge(self, server: DhcpServer, index: ServerIndex) -> None:
        self._ensure_namespace(server, index)
        conf_changed = _write_if_changed(
            server.files.conf, render_conf(index.settings, SERVER_INTERFACE, server.files))
        entries = list(index.entries())
        _write_if_changed(server.files.hosts, render_hosts(entries))
        _write_if_changed(server.files.dns_hosts,
                          render_dns_hosts(entries, index.settings.dns_domain))
        pid = self._dnsmasq.find(server.files)
        if pid is not None and (conf_changed or _leases_to_forget(server.files, entries)):
            self._dnsmasq.stop(pid, server.files)  # it forgets a lease only when restarted
            pid = None
        if pid is None:
            _write_if_changed(server.files.leases, held_leases(_leases(server.files), entries))
            self._dnsmasq.start(server.netns, server.files)
        else:
            # Always: a hosts file written just before a crash was never signalled.
            self._dnsmasq.reload(pid)

    def _ensure_namespace(self, server: DhcpServer, index: ServerIndex) -> None:
        check_interface_name(index.bridge)
        in_netns = ["ip", "-n", server.netns]
        if not self._link_exists(SERVER_INTERFACE, server.netns):
            if server.netns not in self._namespaces():
                self._run(["ip", "netns", "add", server.netns])
            if self._link_exists(server.veth):  # the host's half of a pair made before a crash
                self._run(["ip", "link", "del", "dev", server.veth])
            self._run(["ip", "link", "add", server.veth, "type", "veth", "peer", "name",
                       SERVER_INTERFACE, "netns", server.netns])
        try:
            self._run(["ip", "link", "set", "dev", server.veth, "master", index.bridge])
        except CommandFailed as exc:
            raise DriverError(f"cannot attach the DHCP server of L3 network "
                              f"{server.l3_network_uuid} to bridge {index.bridge}: {exc}") from exc
        self._run(["ip", "link", "set", "dev", server.veth, "up"])
        self._run([*in_netns, "link", "set", "dev", "lo", "up"])
        self._run([*in_netns, "link", "set", "dev", SERVER_INTERFACE, "up"])
        address = f"{index.settings.server_ip}/{index.settings.prefix_length}"
        present = self._addresses(server.netns)
        for stale in present - {address}:
            self._run([*in_netns, "addr", "del", stale, "dev", SERVER_INTERFACE])
        if address not in present:
            self._run([*in_netns, "addr", "add", address, "dev", SERVER_INTERFACE])
        gateway = index.settings.gateway
        if gateway != self._default_gateway(server.netns):
            if gateway:
                self._run([*in_netns, "route", "replace", "default", "via", gateway, "dev",
                           SERVER_INTERFACE])
            else:
                self._run([*in_netns, "route", "del", "default"])

    def _tear_down(self, server: DhcpServer) -> None:
        pid = self._dnsmasq.find(server.files)
        if pid is not None:
            self._dnsmasq.stop(pid, server.files)
        if self._link_exists(server.veth):
            self._run(["ip", "link", "del", "dev", server.veth])  # takes its peer with it
        if server.netns in self._namespaces():
            self._run(["ip", "netns", "del", server.netns])
        shutil.rmtree(server.files.directory, ignore_errors=True)

    # -- reading the host ----------------------------------------------------------------------

    def _networks(self) -> set[str]:
        """The L3 networks this host serves (or was serving when it stopped)."""
        if not self.root.is_dir():
            return set()
        return {entry.name for entry in self.root.iterdir() if entry.is_dir()}

    def _read(self, server: DhcpServer) -> ServerIndex | None:
        data = read_json(server.index)
        return ServerIndex.from_json(data) if data else None

    def _namespaces(self) -> set[str]:
        return {line.split()[0] for line in self._run(["ip", "netns", "list"]).splitlines()
                if line.strip()}

    def _link_exists(self, name: str, netns: str | None = None) -> bool:
        argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
        try:
            self._run(argv)
        except CommandFailed:
            return False
        return True

    def _addresses(self, netns: str) -> set[str]:
        """The IPv4 addresses (with prefix) on the server's interface."""
        output = self._run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev",
                            SERVER_INTERFACE])
        found = set()
        for line in output.splitlines():
            words = line.split()
            if "inet" in words:
                found.add(words[words.index("inet") + 1])
        return found

    def _default_gateway(self, netns: str) -> str | None:
        words = self._run(["ip", "-n", netns, "route", "show", "default"]).split()
        return words[words.index("via") + 1] if "via" in words else None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # dnsmasq reads its hosts file as nobody
        with exclusive_lock(self.root / ".lock", LOCK_TIMEOUT_SECONDS, "this host's DHCP"):
            yield


def _wanted_by_network(nics: Sequence[NicSpec]) -> dict[str, _Wanted]:
    wanted: dict[str, _Wanted] = {}
    for nic in nics:
        if nic.dhcp is None or nic.ip is None:
            continue
        dhcp = nic.dhcp
        settings = ServerSettings(dhcp.server_ip, dhcp.prefix_length, dhcp.gateway, dhcp.dns,
                                  dhcp.dns_domain)
        want = wanted.setdefault(dhcp.l3_network_uuid, _Wanted(settings, nic.bridge, []))
        want.entries.append(HostEntry(nic.mac, nic.ip, dhcp.hostname))
    return wanted


def _leases(files: ServerFiles) -> str:
    try:
        return files.leases.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _leases_to_forget(files: ServerFiles, entries: list[HostEntry]) -> bool:
    leases = _leases(files)
    return held_leases(leases, entries) != leases


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` (readable by all: dnsmasq reads as nobody) unless it is there already."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    return True
