"""Flat-network DHCP and DNS servers on a host, against a fake `ip` and a fake dnsmasq: the
namespace, veth pair, address, route and process each network gets, the hosts files its
dnsmasq reads, the leases it is made to forget, and what a second call, another VM, a destroy,
a settings change or an agent restart does."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostagent.drivers.base import DhcpSpec, DriverError, NicSpec
from hostagent.drivers.dhcp import DhcpServers
from hostagent.drivers.dnsmasq import (
    SEARCH_PATH,
    Dnsmasq,
    HostEntry,
    ServerFiles,
    held_leases,
    render_dns_hosts,
    render_hosts,
)
from hostagent.drivers.shell import CommandFailed

HOST = "c0ffee00112233445566778899aabbcc"
L3 = "a3a3a3a3b4b4c5c5d6d6e7e7e7e7e7e7"
OTHER_L3 = "f1f1f1f1f2f2f3f3f4f4f5f5f5f5f5f5"
VM_A, VM_B = "aaaa" * 8, "bbbb" * 8
NETNS = f"aerie-dhcp-c0ffee00-{L3}"


@dataclass
class Link:
    netns: str | None
    peer: str | None = None
    master: str | None = None
    up: bool = False
    addresses: list[str] = field(default_factory=list)


class FakeIp:
    """`ip` over namespaces and links kept in memory, recording every command."""

    def __init__(self, bridges: set[str]) -> None:
        self.namespaces: set[str] = set()
        self.links: dict[tuple[str | None, str], Link] = {(None, b): Link(None) for b in bridges}
        self.gateways: dict[str, str] = {}  # a namespace's default route
        self.calls: list[list[str]] = []

    def __call__(self, argv) -> str:
        argv = list(argv)
        self.calls.append(argv)
        assert argv[0] == "ip", argv
        netns, rest = (argv[2], argv[3:]) if argv[1] == "-n" else (None, argv[1:])
        if netns is not None and netns not in self.namespaces:
            raise CommandFailed(argv, 1, f'Cannot open network namespace "{netns}"')
        match rest:
            case ["netns", "list"]:
                return "".join(f"{ns} (id: {n})\n" for n, ns in enumerate(sorted(self.namespaces)))
            case ["netns", "add", name]:
                assert name not in self.namespaces
                self.namespaces.add(name)
            case ["netns", "del", name]:
                self.namespaces.remove(name)
                self.links = {k: v for k, v in self.links.items() if k[0] != name}
                self.gateways.pop(name, None)
            case ["link", "show", "dev", name]:
                self._link(argv, netns, name)
            case ["link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns]:
                assert (None, name) not in self.links
                self.links[(None, name)] = Link(None, peer)
                self.links[(peer_ns, peer)] = Link(peer_ns, name)
            case ["link", "del", "dev", name]:
                link = self.links.pop((None, name))
                self.links = {k: v for k, v in self.links.items() if v.peer != name}
                assert link.peer is not None
            case ["link", "set", "dev", name, "master", bridge]:
                self._link(argv, None, bridge)
                self._link(argv, netns, name).master = bridge
            case ["link", "set", "dev", name, "up"]:
                if name != "lo":
                    self._link(argv, netns, name).up = True
            case ["-o", "-4", "addr", "show", "dev", name]:
                return "".join(f"7: {name}    inet {a} scope global {name}\\       valid_lft "
                               "forever\n" for a in self._link(argv, netns, name).addresses)
            case ["addr", "add", address, "dev", name]:
                self._link(argv, netns, name).addresses.append(address)
            case ["addr", "del", address, "dev", name]:
                self._link(argv, netns, name).addresses.remove(address)
            case ["route", "show", "default"]:
                gateway = self.gateways.get(netns)
                return f"default via {gateway} dev dhcp0 \n" if gateway else ""
            case ["route", "replace", "default", "via", gateway, "dev", name]:
                assert netns is not None and self._link(argv, netns, name).addresses
                self.gateways[netns] = gateway
            case ["route", "del", "default"]:
                assert netns is not None
                del self.gateways[netns]
            case _:
                raise AssertionError(f"unexpected command {argv}")
        return ""

    def _link(self, argv, netns, name) -> Link:
        link = self.links.get((netns, name))
        if link is None:
            raise CommandFailed(argv, 1, f'Device "{name}" does not exist.')
        return link

    def reboot(self) -> None:
        """The host restarted: namespaces and veths are gone, bridges are made again."""
        self.namespaces.clear()
        self.links = {k: v for k, v in self.links.items() if v.peer is None}
        self.gateways.clear()

    def made(self) -> list[list[str]]:
        """The commands that changed something (not the ones that only looked)."""
        return [c for c in self.calls if not (
            c[-2:] == ["netns", "list"] or "show" in c)]


class FakeDnsmasq(Dnsmasq):
    """Processes in memory: pid by configuration file."""

    def __init__(self) -> None:
        self.running: dict[Path, int] = {}
        self.events: list[tuple[str, str]] = []
        self._next_pid = 100

    def start(self, netns: str, files: ServerFiles) -> int:
        assert files.conf.exists() and files.hosts.exists() and files.dns_hosts.exists()
        self._next_pid += 1
        self.running[files.conf] = self._next_pid
        self.events.append(("start", netns))
        return self._next_pid

    def find(self, files: ServerFiles) -> int | None:
        return self.running.get(files.conf)

    def reload(self, pid: int) -> None:
        self.events.append(("reload", str(pid)))

    def stop(self, pid: int, files: ServerFiles) -> None:
        assert self.running.pop(files.conf) == pid
        self.events.append(("stop", str(pid)))


def nic(mac: str, ip: str, l3: str = L3, *, hostname: str | None = None,
        dns: tuple[str, ...] = ("8.8.8.8", "1.1.1.1"), bridge: str = "br_eth0") -> NicSpec:
    server = "10.0.0.2" if l3 == L3 else "10.9.0.2"
    return NicSpec("n" + mac.replace(":", ""), mac, bridge, 0, "eth0", None, ip,
                   DhcpSpec(l3, server, 24, server.rsplit(".", 1)[0] + ".1", dns, "corp.test",
                            hostname))


@pytest.fixture
def host(tmp_path):
    ip, dnsmasq = FakeIp({"br_eth0", "br_eth1"}), FakeDnsmasq()
    return ip, dnsmasq, DhcpServers(tmp_path / "state", HOST, ip, dnsmasq)


def test_the_first_vm_gets_a_namespace_a_veth_on_its_bridge_and_a_dnsmasq(host, tmp_path):
    ip, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23", hostname="web-1")])
    server = servers.server(L3)
    assert server.netns == NETNS and len(server.veth) == 15
    veth = server.veth
    assert ip.made() == [
        ["ip", "netns", "add", NETNS],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "dhcp0", "netns", NETNS],
        ["ip", "link", "set", "dev", veth, "master", "br_eth0"],
        ["ip", "link", "set", "dev", veth, "up"],
        ["ip", "-n", NETNS, "link", "set", "dev", "lo", "up"],
        ["ip", "-n", NETNS, "link", "set", "dev", "dhcp0", "up"],
        ["ip", "-n", NETNS, "addr", "add", "10.0.0.2/24", "dev", "dhcp0"],
        ["ip", "-n", NETNS, "route", "replace", "default", "via", "10.0.0.1", "dev", "dhcp0"],
    ]
    assert dnsmasq.events == [("start", NETNS)]
    folder = tmp_path / "state" / f"{HOST}.dhcp" / L3
    assert (folder / "hosts").read_text() == "fa:16:3e:00:00:01,10.0.0.23,web-1\n"
    assert (folder / "dns-hosts").read_text() == "10.0.0.23 web-1.corp.test web-1\n"
    conf = (folder / "dnsmasq.conf").read_text().splitlines()
    for line in ("interface=dhcp0", "bind-dynamic", "no-resolv", "no-hosts",
                 f"addn-hosts={folder}/dns-hosts", "domain-needed", "dhcp-ignore-names",
                 "dhcp-range=10.0.0.0,static,255.255.255.0,1h",
                 f"dhcp-hostsfile={folder}/hosts", f"dhcp-leasefile={folder}/leases",
                 f"pid-file={folder}/dnsmasq.pid",
                 "dhcp-option=option:router,10.0.0.1",
                 "dhcp-option=option:dns-server,10.0.0.2",  # itself: it serves the DNS
                 "server=8.8.8.8", "server=1.1.1.1",
                 "domain=corp.test", "local=/corp.test/"):
        assert line in conf
    assert not [line for line in conf if line.startswith("port=")]  # DNS on port 53
    for name in ("hosts", "dns-hosts"):  # dnsmasq reads them as nobody
        assert (folder / name).stat().st_mode & 0o777 == 0o644
    index = json.loads((folder / "vms.json").read_text())
    assert index["vms"] == {VM_A: [{"mac": "fa:16:3e:00:00:01", "ip": "10.0.0.23",
                                    "hostname": "web-1"}]}


def test_asking_again_changes_nothing_but_a_reload(host):
    ip, dnsmasq, servers = host
    nics = [nic("fa:16:3e:00:00:01", "10.0.0.23")]
    servers.update_vm(VM_A, nics)
    made = len(ip.made())
    servers.update_vm(VM_A, nics)
    assert ip.made()[made:] == [  # only the idempotent ones: link master, up
        ["ip", "link", "set", "dev", servers.server(L3).veth, "master", "br_eth0"],
        ["ip", "link", "set", "dev", servers.server(L3).veth, "up"],
        ["ip", "-n", NETNS, "link", "set", "dev", "lo", "up"],
        ["ip", "-n", NETNS, "link", "set", "dev", "dhcp0", "up"],
    ]
    assert dnsmasq.events == [("start", NETNS), ("reload", "101")]


def test_a_second_vm_is_added_by_a_reload_and_destroys_remove_entries_then_everything(
        host, tmp_path):
    ip, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23")])
    servers.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24", hostname="db")])
    hosts = tmp_path / "state" / f"{HOST}.dhcp" / L3 / "hosts"
    dns_hosts = hosts.with_name("dns-hosts")
    assert hosts.read_text() == "fa:16:3e:00:00:01,10.0.0.23\nfa:16:3e:00:00:02,10.0.0.24,db\n"
    assert dns_hosts.read_text() == "10.0.0.24 db.corp.test db\n"
    servers.remove_vm(VM_A)
    assert hosts.read_text() == "fa:16:3e:00:00:02,10.0.0.24,db\n"
    assert dns_hosts.read_text() == "10.0.0.24 db.corp.test db\n"
    assert dnsmasq.events == [("start", NETNS), ("reload", "101"), ("reload", "101")]
    servers.remove_vm(VM_B)
    assert dnsmasq.events[-1] == ("stop", "101") and dnsmasq.running == {}
    assert ip.made()[-2:] == [["ip", "link", "del", "dev", servers.server(L3).veth],
                              ["ip", "netns", "del", NETNS]]
    assert ip.namespaces == set() and set(ip.links) == {(None, "br_eth0"), (None, "br_eth1")}
    assert not hosts.parent.exists()
    calls = len(ip.calls)
    servers.remove_vm(VM_B)  # a redelivered destroy
    servers.remove_vm("never-here")
    assert len(ip.calls) == calls


def test_a_named_vm_is_answered_by_name_until_it_goes(host, tmp_path):
    _, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23", hostname="web-1")])
    servers.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24")])
    dns_hosts = tmp_path / "state" / f"{HOST}.dhcp" / L3 / "dns-hosts"
    assert dns_hosts.read_text() == "10.0.0.23 web-1.corp.test web-1\n"
    servers.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24", hostname="db")])
    assert dns_hosts.read_text() == ("10.0.0.23 web-1.corp.test web-1\n"
                                     "10.0.0.24 db.corp.test db\n")
    servers.remove_vm(VM_A)
    assert dns_hosts.read_text() == "10.0.0.24 db.corp.test db\n"
    assert dnsmasq.events == [("start", NETNS)] + [("reload", "101")] * 3  # no lease held


def test_a_lease_no_vm_holds_any_more_is_forgotten_by_a_restart(host, tmp_path):
    _, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23", hostname="web-1")])
    servers.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24")])
    leases = tmp_path / "state" / f"{HOST}.dhcp" / L3 / "leases"
    leases.write_text("1795584442 fa:16:3e:00:00:02 10.0.0.24 * 01:fa:16:3e:00:00:02\n"
                      "1795584441 fa:16:3e:00:00:01 10.0.0.23 web-1 *\n")
    servers.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24")])  # both held: a reload
    assert dnsmasq.events[-1] == ("reload", "101")
    servers.remove_vm(VM_A)  # dnsmasq would answer web-1, and keep 10.0.0.23 from others
    assert dnsmasq.events[-2:] == [("stop", "101"), ("start", NETNS)]
    assert leases.read_text() == "1795584442 fa:16:3e:00:00:02 10.0.0.24 * 01:fa:16:3e:00:00:02\n"


def test_leases_are_held_by_their_entrys_mac_and_address_and_a_name_only_if_it_has_one():
    entries = [HostEntry("FA:16:3E:00:00:01", "10.0.0.5", "web"),
               HostEntry("fa:16:3e:00:00:02", "10.0.0.6")]
    held = ("1 fa:16:3e:00:00:01 10.0.0.5 web 01:fa:16:3e:00:00:01\n"
            "2 fa:16:3e:00:00:01 10.0.0.5 * *\n"
            "3 fa:16:3e:00:00:02 10.0.0.6 * *\n")
    not_held = ("4 fa:16:3e:00:00:02 10.0.0.6 web *\n"  # renamed to nothing: the name goes
                "5 fa:16:3e:00:00:01 10.0.0.7 web *\n"  # its address changed
                "6 fa:16:3e:00:00:09 10.0.0.5 * *\n"  # another MAC: a destroyed VM's
                "garbage\n")
    assert held_leases(held + not_held, entries) == held
    assert held_leases("", entries) == ""


def test_a_name_a_later_entry_claims_again_is_its_and_without_a_domain_names_are_plain():
    entries = [HostEntry("fa:16:3e:00:00:01", "10.0.0.5", "web"),
               HostEntry("fa:16:3e:00:00:02", "10.0.0.6", "db"),
               HostEntry("fa:16:3e:00:00:03", "10.0.0.7", "web"),
               HostEntry("fa:16:3e:00:00:04", "10.0.0.8")]
    assert render_dns_hosts(entries, None) == "10.0.0.7 web\n10.0.0.6 db\n"
    assert render_dns_hosts(entries, "a.test") == "10.0.0.7 web.a.test web\n10.0.0.6 db.a.test db\n"


def test_changed_settings_restart_dnsmasq_and_readdress_and_reroute_its_interface(
        host, tmp_path):
    ip, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23")])
    moved = NicSpec("n1", "fa:16:3e:00:00:01", "br_eth0", 0, ip="10.0.0.23",
                    dhcp=DhcpSpec(L3, "10.0.0.3", 24, "10.0.0.254", ("9.9.9.9",),
                                  hostname="web-1"))
    servers.update_vm(VM_A, [moved])
    assert dnsmasq.events == [("start", NETNS), ("stop", "101"), ("start", NETNS)]
    assert ip.links[(NETNS, "dhcp0")].addresses == ["10.0.0.3/24"]
    assert ip.gateways == {NETNS: "10.0.0.254"}
    folder = tmp_path / "state" / f"{HOST}.dhcp" / L3
    conf = (folder / "dnsmasq.conf").read_text().splitlines()
    assert {"dhcp-option=option:dns-server,10.0.0.3", "server=9.9.9.9"} <= set(conf)
    assert not [line for line in conf if line.startswith(("server=8", "domain=", "local="))]
    assert (folder / "dns-hosts").read_text() == "10.0.0.23 web-1\n"  # no domain now
    servers.update_vm(VM_A, [NicSpec("n1", "fa:16:3e:00:00:01", "br_eth0", 0, ip="10.0.0.23",
                                     dhcp=DhcpSpec(L3, "10.0.0.3", 24))])
    assert ip.gateways == {}  # no gateway, no route
    assert "option:router" not in (folder / "dnsmasq.conf").read_text()


def test_a_nic_moved_to_another_network_leaves_the_old_one(host):
    ip, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23")])
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.9.0.23", OTHER_L3,
                                 bridge="br_eth1")])
    other = servers.server(OTHER_L3)
    assert ip.namespaces == {other.netns}
    assert ip.links[(None, other.veth)].master == "br_eth1"
    assert [e[0] for e in dnsmasq.events] == ["start", "stop", "start"]
    servers.update_vm(VM_A, [])  # no DHCP NICs any more
    assert ip.namespaces == set() and dnsmasq.running == {}


def test_after_an_agent_restart_the_running_server_is_found_and_after_a_reboot_remade(
        host, tmp_path):
    ip, dnsmasq, servers = host
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23")])
    restarted = DhcpServers(tmp_path / "state", HOST, ip, dnsmasq)
    restarted.update_vm(VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24")])
    assert dnsmasq.events == [("start", NETNS), ("reload", "101")]
    ip.reboot()
    dnsmasq.running.clear()
    DhcpServers(tmp_path / "state", HOST, ip, dnsmasq).update_vm(
        VM_B, [nic("fa:16:3e:00:00:02", "10.0.0.24")])
    assert ip.namespaces == {NETNS} and dnsmasq.events[-1] == ("start", NETNS)
    assert ip.links[(NETNS, "dhcp0")].addresses == ["10.0.0.2/24"]
    assert ip.gateways == {NETNS: "10.0.0.1"}
    hosts = (tmp_path / "state" / f"{HOST}.dhcp" / L3 / "hosts").read_text()
    assert hosts == "fa:16:3e:00:00:01,10.0.0.23\nfa:16:3e:00:00:02,10.0.0.24\n"


def test_half_a_veth_pair_left_by_a_crash_is_replaced(host):
    ip, _, servers = host
    server = servers.server(L3)
    ip.namespaces.add(NETNS)
    ip.links[(None, server.veth)] = Link(None, "gone")
    servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23")])
    assert ["ip", "link", "del", "dev", server.veth] in ip.made()
    assert ip.links[(NETNS, "dhcp0")].peer == server.veth


def test_a_missing_bridge_is_a_clear_error(host):
    _, _, servers = host
    with pytest.raises(DriverError, match=f"cannot attach the DHCP server of L3 network {L3} "
                                          "to bridge br_gone: .*does not exist"):
        servers.update_vm(VM_A, [nic("fa:16:3e:00:00:01", "10.0.0.23", bridge="br_gone")])


def test_names_are_unique_per_host_and_network_and_fit_linux_limits(tmp_path):
    names = {(DhcpServers(tmp_path, h, FakeIp(set())).server(l3).veth)
             for h in (HOST, "d" * 32) for l3 in (L3, OTHER_L3)}
    assert len(names) == 4 and all(len(n) <= 15 for n in names)


def test_a_vm_without_dhcp_nics_on_a_host_without_servers_touches_nothing(host, tmp_path):
    ip, _, servers = host
    servers.update_vm(VM_A, [NicSpec("n", "fa:16:3e:00:00:01", "br_eth0", 0)])
    servers.remove_vm(VM_A)
    assert ip.calls == [] and not (tmp_path / "state").exists()


def test_a_later_vm_claiming_an_address_takes_it_from_an_earlier_one():
    entries = [HostEntry("fa:16:3e:00:00:01", "10.0.0.5"), HostEntry("fa:16:3e:00:00:02",
                                                                    "10.0.0.6", "b"),
               HostEntry("FA:16:3E:00:00:03", "10.0.0.5", "c")]
    assert render_hosts(entries) == "fa:16:3e:00:00:02,10.0.0.6,b\nfa:16:3e:00:00:03,10.0.0.5,c\n"


def test_a_host_without_dnsmasq_is_a_clear_error(tmp_path):
    dnsmasq = Dnsmasq(lambda argv: "", search_path=str(tmp_path))
    with pytest.raises(DriverError, match="dnsmasq is not installed on this host"):
        dnsmasq.start("ns", ServerFiles(tmp_path))


def test_dnsmasq_is_found_by_pid_file_and_command_line_and_stopped(tmp_path):
    files = ServerFiles(tmp_path)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                              f"--conf-file={files.conf}"])
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        dnsmasq = Dnsmasq(lambda argv: "")
        assert dnsmasq.find(files) is None  # no pid file
        files.pid.write_text(f"{stranger.pid}\n")
        assert dnsmasq.find(files) is None  # a recycled pid: not ours
        files.pid.write_text(f"{decoy.pid}\n")
        assert dnsmasq.find(files) == decoy.pid
        started = time.monotonic()
        dnsmasq.stop(decoy.pid, files)
        assert decoy.wait(5) == -signal.SIGTERM and time.monotonic() - started < 5
        assert dnsmasq.find(files) is None
    finally:
        for process in (decoy, stranger):
            process.kill()
            process.wait()


@pytest.mark.skipif(shutil.which("dnsmasq", path=SEARCH_PATH) is None
                    and os.environ.get("CI", "").lower() != "true",
                    reason="dnsmasq is not installed (scripts/bootstrap installs dnsmasq-base; "
                           "under CI=true this test must run)")
def test_dnsmasq_refuses_a_state_dir_nobody_can_enter(tmp_path):
    private = tmp_path / "private"
    (private / "net").mkdir(parents=True)
    os.chmod(private, 0o700)
    with pytest.raises(DriverError, match=f"{private} is not searchable by others"):
        Dnsmasq(lambda argv: "").start("ns", ServerFiles(private / "net"))
