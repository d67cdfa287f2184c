"""A flat network's DHCP and DNS server for real: the agent's DHCP code, run in a "host"
network namespace with a Linux bridge, starts dnsmasq in a namespace of its own; a "guest"
namespace on the same bridge runs busybox udhcpc with a VM NIC's MAC and gets exactly that
NIC's address (and gateway, domain, hostname, and the server as its DNS server); a MAC the
agent was not told of gets nothing. Asked from the guest, the server answers the VMs' host
names (plain and in the domain) as they come and go, and forwards other names through the
gateway to the network's DNS server (a stub in the host namespace). The last VM's removal
leaves no namespace, veth or process behind.

The agent's code runs under ``nsenter --net`` (not ``ip netns exec``, whose private mount
namespace would hide the namespaces it makes from everyone else), in fresh processes, as the
agent would after a restart: each one finds the running dnsmasq again by its pid file.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parents[2]
HOST = "e2e0" + uuid.uuid4().hex[4:]
L3 = uuid.uuid4().hex
BRIDGE = "br_lab"
MAC_A, MAC_B, STRANGER = "fa:16:3e:0a:00:01", "fa:16:3e:0a:00:02", "fa:16:3e:0a:00:99"
SERVER_IP, GATEWAY, UPSTREAM = "10.77.0.2", "10.77.0.1", "10.88.0.53"  # upstream: off-link
DHCP = {"l3NetworkUuid": L3, "serverIp": SERVER_IP, "prefixLength": 24,
        "gateway": GATEWAY, "dns": [UPSTREAM], "dnsDomain": "lab.test"}
UPSTREAM_ANSWER = "192.0.2.7"  # the stub upstream's answer to every name
NOERROR, NXDOMAIN = 0, 3
COMMAND_TIMEOUT = 30

AGENT_SCRIPT = """
import json, sys
from pathlib import Path
from hostagent import arguments
from hostagent.drivers.dhcp import DhcpServers

state_dir, host, action, args = sys.argv[1:5]
servers = DhcpServers(Path(state_dir), host)
vm = arguments.vm_spec(json.loads(args))
if action == "update":
    servers.update_vm(vm.uuid, vm.nics)
else:
    servers.remove_vm(vm.uuid)
"""

LEASE_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && env > "{out}.$interface"
exit 0
"""


def dns_query(name: str) -> bytes:
    """A standard query, recursion desired, for the A record of ``name``."""
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return struct.pack("!6H", 0xAE1E, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!2H", 1, 1)


def skip_name(packet: bytes, at: int) -> int:
    """Where the (possibly compressed) domain name at ``at`` ends."""
    while packet[at] and packet[at] < 0xC0:
        at += packet[at] + 1
    return at + (2 if packet[at] else 1)


def resolve(server: str, name: str) -> tuple[int, list[str]]:
    """The response code and IPv4 addresses a DNS server answers for ``name``."""
    query = dns_query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, (server, 53))
        response = sock.recv(4096)
    flags, answers = struct.unpack("!2xH2xH", response[:8])
    addresses, at = [], len(query)  # the question is echoed as it was sent
    for _ in range(answers):
        at = skip_name(response, at)
        record_type, length = struct.unpack("!H6xH", response[at:at + 10])
        if record_type == 1:
            addresses.append(socket.inet_ntoa(response[at + 10:at + 14]))
        at += 10 + length
    return flags & 0xF, addresses


def serve_upstream(address: str) -> None:
    """A DNS server answering every query with UPSTREAM_ANSWER."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 53))
        while True:
            query, client = sock.recvfrom(4096)
            question = query[12:skip_name(query, 12) + 4]  # not the additional records
            answer = struct.pack("!3HIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(
                UPSTREAM_ANSWER)
            sock.sendto(query[:2] + struct.pack("!5H", 0x8180, 1, 1, 0, 0) + question + answer,
                        client)


def missing_tools() -> list[str]:
    return [tool for tool in ("ip", "nsenter", "busybox", "dnsmasq")
            if shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""),
                                                        "/usr/sbin", "/sbin"])) is None]


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true must run the real DHCP test: {reason}")
    pytest.skip(reason)


def sh(*argv: str, check: bool = True,
       cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          cwd=cwd)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done


def is_dnsmasq(pid: int) -> bool:
    """A live dnsmasq (a zombie has an empty command line)."""
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return program.endswith(b"dnsmasq")


@dataclass
class Lab:
    host_netns: str
    guest_netns: str
    state_dir: Path

    @property
    def server_netns(self) -> str:
        return f"aerie-dhcp-{HOST[:8]}-{L3}"

    @property
    def server_dir(self) -> Path:
        return self.state_dir / f"{HOST}.dhcp" / L3

    def agent(self, action: str, vm_uuid: str, nics: list[dict]) -> float:
        """Run the agent's DHCP code for one VM in the host namespace; seconds it took."""
        args = {"uuid": vm_uuid, "name": "vm", "cpuNum": 1, "memorySize": 1 << 26,
                "nics": nics}
        started = time.monotonic()
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.host_netns}", sys.executable, "-c",
             AGENT_SCRIPT, str(self.state_dir), HOST, action, json.dumps(args)],
            cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        assert done.returncode == 0, done.stderr
        return time.monotonic() - started

    def guest_nic(self, name: str, mac: str) -> None:
        """An interface in the guest namespace, plugged into the host's bridge."""
        port = f"gp{name}{self.guest_netns[-6:]}"[:15]
        sh("ip", "-n", self.host_netns, "link", "add", port, "type", "veth", "peer", "name",
           name, "netns", self.guest_netns)
        sh("ip", "-n", self.host_netns, "link", "set", "dev", port, "master", BRIDGE, "up")
        sh("ip", "-n", self.guest_netns, "link", "set", "dev", name, "address", mac, "up")

    def lease(self, interface: str, attempts: int = 5) -> tuple[dict[str, str] | None, float]:
        """What udhcpc was handed on the interface (None: nothing), and how long it took."""
        out = self.state_dir / "lease"
        script = self.state_dir / "lease.sh"
        script.write_text(LEASE_SCRIPT.format(out=out))
        script.chmod(0o755)
        started = time.monotonic()
        done = sh("ip", "netns", "exec", self.guest_netns, "busybox", "udhcpc", "-i",
                  interface, "-n", "-q", "-f", "-t", str(attempts), "-T", "1", "-s",
                  str(script), check=False)
        took = time.monotonic() - started
        if done.returncode != 0:
            return None, took
        values = Path(f"{out}.{interface}").read_text().splitlines()
        return dict(line.split("=", 1) for line in values if "=" in line), took

    def resolve(self, name: str) -> tuple[int, list[str]]:
        """Ask the DHCP server's DNS for ``name`` from the guest namespace."""
        done = sh("ip", "netns", "exec", self.guest_netns, sys.executable, "-c",
                  "import json, sys; from tests.e2e.test_agent_dhcp import resolve; "
                  "print(json.dumps(resolve(*sys.argv[1:])))", SERVER_IP, name, cwd=REPO)
        code, addresses = json.loads(done.stdout)
        return code, addresses

    def dnsmasq_pid(self) -> int | None:
        try:
            pid = int((self.server_dir / "dnsmasq.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if is_dnsmasq(pid) else None

    def namespaces(self) -> set[str]:
        return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
                if line.strip()}


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        unavailable("network namespaces and dnsmasq need root")
    if missing := missing_tools():
        unavailable(f"not installed: {', '.join(missing)} (apt-get install iproute2 "
                    "util-linux busybox-static dnsmasq-base)")
    suffix = uuid.uuid4().hex[:6]
    # dnsmasq reads its hosts file as nobody: the state dir must be searchable by others.
    state_dir = Path(tempfile.mkdtemp(prefix="aerie-dhcp-e2e-"))
    state_dir.chmod(0o755)
    lab = Lab(f"aerie-t-host-{suffix}", f"aerie-t-guest-{suffix}", state_dir)
    made = sh("ip", "netns", "add", lab.host_netns, check=False)
    if made.returncode != 0:
        shutil.rmtree(state_dir)
        unavailable(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        sh("ip", "netns", "add", lab.guest_netns)
        sh("ip", "-n", lab.host_netns, "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "-n", lab.host_netns, "link", "set", "dev", BRIDGE, "up")
        # The host namespace is the network's gateway, and holds its upstream DNS server.
        sh("ip", "-n", lab.host_netns, "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        sh("ip", "-n", lab.host_netns, "link", "set", "dev", "lo", "up")
        sh("ip", "-n", lab.host_netns, "addr", "add", f"{UPSTREAM}/32", "dev", "lo")
        upstream = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{lab.host_netns}", sys.executable, "-c",
             "import sys; from tests.e2e.test_agent_dhcp import serve_upstream; "
             "serve_upstream(sys.argv[1])", UPSTREAM], cwd=REPO)
        try:
            yield lab
        finally:
            upstream.kill()
            upstream.wait()
    finally:
        pid = lab.dnsmasq_pid()  # a failed test may leave the server running
        if pid is not None:
            os.kill(pid, 9)
        for netns in (lab.server_netns, lab.guest_netns, lab.host_netns):
            sh("ip", "netns", "del", netns, check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


def nic(mac: str, ip: str, hostname: str | None) -> dict:
    return {"uuid": uuid.uuid4().hex, "mac": mac, "bridge": BRIDGE, "deviceId": 0, "ip": ip,
            "dhcp": {**DHCP, "hostname": hostname}}


def test_a_guest_gets_its_nics_address_and_names_from_the_hosts_dhcp_server(lab):
    vm_a, vm_b = uuid.uuid4().hex, uuid.uuid4().hex
    lab.guest_nic("eth0", MAC_A)
    lab.guest_nic("eth1", MAC_B)
    lab.guest_nic("eth2", STRANGER)

    server_up = lab.agent("update", vm_a, [nic(MAC_A, "10.77.0.23", "web-1")])
    pid = lab.dnsmasq_pid()
    assert pid is not None and lab.server_netns in lab.namespaces()
    lease, lease_seconds = lab.lease("eth0")
    assert lease is not None, (lab.server_dir / "dnsmasq.log").read_text()
    assert (lease["ip"], lease["subnet"], lease["router"], lease["serverid"]) == (
        "10.77.0.23", "255.255.255.0", GATEWAY, SERVER_IP)
    assert lease["dns"].split() == [SERVER_IP]
    assert (lease["domain"], lease["hostname"]) == ("lab.test", "web-1")

    sh("ip", "-n", lab.guest_netns, "addr", "add", "10.77.0.23/24", "dev", "eth0")
    started = time.monotonic()
    assert lab.resolve("web-1") == (NOERROR, ["10.77.0.23"])
    first_answer = time.monotonic() - started
    assert lab.resolve("web-1.lab.test") == (NOERROR, ["10.77.0.23"])
    # Unknown names in the domain, and plain names, are not forwarded.
    assert lab.resolve("nobody.lab.test")[0] == NXDOMAIN
    assert lab.resolve("nobody")[0] == NXDOMAIN
    # Other names go to the network's DNS server, through the gateway.
    assert lab.resolve("www.example.org") == (NOERROR, [UPSTREAM_ANSWER])

    # A restarted agent asking again: the same dnsmasq serves on.
    lab.agent("update", vm_a, [nic(MAC_A, "10.77.0.23", "web-1")])
    assert lab.dnsmasq_pid() == pid
    # Another VM: added to the running server's hosts file (SIGHUP), not a new server.
    lab.agent("update", vm_b, [nic(MAC_B, "10.77.0.24", None)])
    assert lab.dnsmasq_pid() == pid
    second, _ = lab.lease("eth1")
    assert second is not None and second["ip"] == "10.77.0.24" and "hostname" not in second
    stranger, _ = lab.lease("eth2", attempts=2)
    assert stranger is None  # static mappings only
    # It is given a name: answered at once, by the same server.
    lab.agent("update", vm_b, [nic(MAC_B, "10.77.0.24", "db")])
    assert lab.resolve("db.lab.test") == (NOERROR, ["10.77.0.24"])
    assert lab.dnsmasq_pid() == pid

    # Its removal makes dnsmasq forget its lease (only a restart does): its name goes at
    # once, and its address can be handed to the next VM given it.
    forget_seconds = lab.agent("remove", vm_a, [])
    pid = lab.dnsmasq_pid()
    assert pid is not None
    assert lab.resolve("web-1")[0] == NXDOMAIN
    assert lab.resolve("web-1.lab.test")[0] == NXDOMAIN
    assert lab.resolve("db") == (NOERROR, ["10.77.0.24"])
    vm_c = uuid.uuid4().hex
    lab.agent("update", vm_c, [nic(STRANGER, "10.77.0.23", None)])
    reused, _ = lab.lease("eth2")
    assert reused is not None and reused["ip"] == "10.77.0.23"
    assert lab.dnsmasq_pid() == pid  # no lease to forget: a reload

    lab.agent("remove", vm_b, [])
    lab.agent("remove", vm_c, [])
    assert not is_dnsmasq(pid)
    assert lab.server_netns not in lab.namespaces()
    links = sh("ip", "-n", lab.host_netns, "-o", "link", "show").stdout
    assert "adh" not in links, links  # the veth went with the server
    assert not lab.server_dir.exists()
    print(f"\nDHCP server up in {server_up:.2f} s (fresh process, namespace, veth, dnsmasq); "
          f"first lease in {lease_seconds:.2f} s; first name answered in {first_answer:.2f} s "
          f"(with a fresh Python); a leased VM removed in {forget_seconds:.2f} s")
