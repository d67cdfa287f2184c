"""A flat network's DHCP server for real: the agent's DHCP code, run in a "host" network
namespace with a Linux bridge, starts dnsmasq in a namespace of its own; a "guest" namespace
on the same bridge runs busybox udhcpc with a VM NIC's MAC and gets exactly that NIC's address
(and gateway, DNS, domain and hostname); a MAC the agent was not told of gets nothing; the
last VM's removal leaves no namespace, veth or process behind.

The agent's code runs under ``nsenter --net`` (not ``ip netns exec``, whose private mount
namespace would hide the namespaces it makes from everyone else), in fresh processes, as the
agent would after a restart: each one finds the running dnsmasq again by its pid file.
"""
from __future__ import annotations

import json
import os
import shutil
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
DHCP = {"l3NetworkUuid": L3, "serverIp": "10.77.0.2", "prefixLength": 24,
        "gateway": "10.77.0.1", "dns": ["10.77.0.53", "9.9.9.9"], "dnsDomain": "lab.test"}
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


def missing_tools() -> list[str]:
    return [tool for tool in ("ip", "nsenter", "busybox", "dnsmasq")
            if shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""),
                                                        "/usr/sbin", "/sbin"])) is None]


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true must run the real DHCP test: {reason}")
    pytest.skip(reason)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
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
        yield lab
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


def test_a_guest_gets_its_nics_address_from_the_hosts_dhcp_server(lab):
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
        "10.77.0.23", "255.255.255.0", "10.77.0.1", "10.77.0.2")
    assert lease["dns"].split() == ["10.77.0.53", "9.9.9.9"]
    assert (lease["domain"], lease["hostname"]) == ("lab.test", "web-1")

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

    lab.agent("remove", vm_a, [])
    assert lab.dnsmasq_pid() == pid
    lab.agent("remove", vm_b, [])
    assert not is_dnsmasq(pid)
    assert lab.server_netns not in lab.namespaces()
    links = sh("ip", "-n", lab.host_netns, "-o", "link", "show").stdout
    assert "adh" not in links, links  # the veth went with the server
    assert not lab.server_dir.exists()
    print(f"\nDHCP server up in {server_up:.2f} s (fresh process, namespace, veth, dnsmasq); "
          f"first lease in {lease_seconds:.2f} s")
