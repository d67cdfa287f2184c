"""A real KVM host, end to end: `aerie up` adds a "host" (a network namespace with its own
sshd, tests/support/netns_hosts.py) over ssh — Ansible installs and starts the agent there —
then boots a real guest on it (qemu under TCG through libvirt, from an image built from
Debian's packages during the test, tests/support/guest_image.py) that takes the address Aerie
allocated from the agent's dnsmasq, and runs it through stop, start, a poweroff from inside
the guest, destroy and expunge. AddKvmHost to an unreachable address and with a wrong
password fail cleanly. Each phase's time is printed: these are the README's figures."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_server import Server
from tests.support.agent_process import Client
from tests.support.api import ADMIN_PASSWORD
from tests.support.guest_image import build_guest_image, default_cache_dir
from tests.support.netns_hosts import NetnsHost, NetnsHosts, unavailable_reason
from tests.support.phases import Phases

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
GUEST_MEMORY = 128 * MIB
# The guests' network: it exists only on the host namespace's bridge.
L3_CIDR, L3_GATEWAY, L3_FIRST, L3_LAST = "172.31.250.0/24", "172.31.250.1", \
    "172.31.250.10", "172.31.250.60"
ADD_HOST_WITHIN = 240  # seconds; the figure to beat is 30
BOOT_WITHIN = 90


def _require_machine() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true must run the real-host test, but: {reason}")
    pytest.skip(reason)


class ImageServer:
    """An HTTP server on the hosts' gateway address serving the guest image, as an image
    server on the management network would."""

    def __init__(self, address: str, image: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(image.parent))
        self._server = http.server.ThreadingHTTPServer((address, 0), handler)
        self.url = f"http://{address}:{self._server.server_address[1]}/{image.name}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        return


@dataclass
class Site:
    hosts: NetnsHosts
    api: Client
    server: Server
    cluster: str
    image: str
    l3: str
    offering: str
    storage_dir: Path
    tasks_dir: Path

    @property
    def host(self) -> NetnsHost:
        return self.hosts.hosts[0]

    def add_kvm_host(self, address: str, password: str, within: float = ADD_HOST_WITHIN,
                     on_progress=None) -> dict:
        accepted = self.api.http.post("/v1/hosts/kvm", json={
            "clusterUuid": self.cluster, "name": f"kvm-{address}", "managementIp": address,
            "username": self.hosts.username, "password": password})
        assert accepted.status_code == 202, accepted.text
        return self.wait_job(accepted.json()["jobUuid"], within, on_progress)

    def wait_job(self, job_uuid: str, within: float, on_progress=None) -> dict:
        deadline = time.monotonic() + within
        while (job := self.api.get(f"/v1/api-jobs/{job_uuid}").json())["state"] in (
                "Waiting", "Running"):
            assert time.monotonic() < deadline, f"job not done in {within}s: {job}"
            if on_progress is not None:
                on_progress(job.get("progress"))
            time.sleep(0.2)
        return job

    def vm(self, uuid: str) -> dict:
        return self.api.get(f"/v1/vm-instances/{uuid}").json()["inventory"]

    def wait_vm_state(self, uuid: str, state: str, within: float) -> None:
        deadline = time.monotonic() + within
        while (seen := self.vm(uuid)["state"]) != state:
            assert time.monotonic() < deadline, f"VM {uuid} is {seen}, not {state}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    _require_machine()
    tmp = tmp_path_factory.mktemp("real-kvm-host")
    image = build_guest_image(default_cache_dir())
    with NetnsHosts(2) as hosts:
        os.chmod(hosts.root, 0o755)  # the agents' dnsmasq (user nobody) reads files under it
        images = ImageServer(hosts.gateway, image)
        # Both "hosts" of a run would share this filesystem: each agent lives under a
        # folder of its own, with libvirt's qemu driver embedded in it (its own qemu
        # processes, no shared libvirtd).
        extra_vars = tmp / "extra-vars.yml"
        # (short: qemu's unix sockets live under the embedded libvirt root)
        home = f"{hosts.root}/a-{{{{ aerie_host_uuid[:8] }}}}"
        extra_vars.write_text(json.dumps({
            "aerie_agent_home": home, "aerie_libvirt_uri": f"qemu:///embed?root={home}/libvirt",
            "aerie_domain_type": "qemu"}))
        tasks_dir = tmp / "site.d"  # the operator's task files (none until a test adds one)
        tasks_dir.mkdir()
        server = Server({"AERIE_DB_URL": f"sqlite:///{tmp / 'cp.db'}",
                         "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                         "AERIE_ANSIBLE_EXTRA_VARS": str(extra_vars),
                         "AERIE_ANSIBLE_TASKS_DIR": str(tasks_dir)}, tmp,
                        address=hosts.gateway)
        try:
            yield _build_site(hosts, server, images.url, Path(hosts.root) / "ps", tasks_dir)
        finally:
            server.process.kill()
            server.process.wait()
            images.close()
            _kill_processes_under(hosts.root)
            _delete_dhcp_namespaces(hosts.root)
            print(f"\ncontrol plane log: {server.log}")


def _delete_dhcp_namespaces(root: str) -> None:
    """The DHCP namespaces the hosts' agents made, in case a failure left them: named
    after their host (whose agent lives in ``<root>/a-<host uuid[:8]>``); their names are
    visible here, their mounts were in the host's sshd's mount namespace."""
    prefixes = tuple(f"aerie-dhcp-{home.name[2:]}-" for home in Path(root).glob("a-*"))
    for name in os.listdir("/run/netns") if prefixes else ():
        if name.startswith(prefixes):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _kill_processes_under(root: str) -> None:
    """What the hosts started outside their own namespaces (a DHCP server runs in one of
    its own), found by their files under the hosts' directory: gone with the test."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and str(root) in _cmdline(int(entry.name)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def _build_site(hosts: NetnsHosts, server: Server, image_url: str, storage_dir: Path,
                tasks_dir: Path) -> Site:
    api = Client(server.url)
    zone = api.do("POST", "/v1/zones", {"name": "real"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "kvm",
                                              "hypervisorType": "KVM"})["uuid"]
    storage = api.do("POST", "/v1/primary-storage/local-storage", {
        "zoneUuid": zone, "name": "local", "url": str(storage_dir),
        "totalCapacity": 20 * 1024 * MIB})["uuid"]
    api.do("POST", f"/v1/clusters/{cluster}/primary-storage/{storage}")
    backup = api.do("POST", "/v1/backup-storage/image-store", {
        "name": "images", "url": "/images", "hostname": hosts.gateway})["uuid"]
    api.do("POST", f"/v1/zones/{zone}/backup-storage/{backup}")
    image = api.do("POST", "/v1/images", {"name": "busybox-guest", "url": image_url,
                                         "backupStorageUuids": [backup]})["uuid"]
    l2 = api.do("POST", "/v1/l2-networks/no-vlan", {
        "zoneUuid": zone, "name": "flat", "physicalInterface": "data0"})["uuid"]
    api.do("POST", f"/v1/l2-networks/{l2}/clusters/{cluster}")
    l3 = api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2, "name": "flat"})["uuid"]
    api.do("POST", f"/v1/l3-networks/{l3}/ip-ranges", {
        "name": "guests", "startIp": L3_FIRST, "endIp": L3_LAST, "netmask": "255.255.255.0",
        "gateway": L3_GATEWAY})
    offering = api.do("POST", "/v1/instance-offerings", {
        "name": "tiny", "cpuNum": 1, "memorySize": GUEST_MEMORY})["uuid"]
    # The agent's VM list every 2 s: a guest that powers itself off is seen within that.
    api.do("PUT", "/v1/global-configurations/host/ping.interval", {"value": "2"})
    return Site(hosts, api, server, cluster, image, l3, offering, storage_dir, tasks_dir)


def agent_pids(host: NetnsHost) -> list[int]:
    return [pid for pid in host.pids() if "aerie-agent" in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def guest_view(site: Site, host_uuid: str, ip: str, path: str = "/",
               within: float = BOOT_WITHIN) -> str:
    """What the guest's web server answers, asked from the DHCP server's namespace (the
    only place on the host with an address on the guests' network). The host's sshd runs
    in a mount namespace of its own (``ip netns exec``), so the namespaces its agent makes
    are named there: enter it first."""
    namespace = f"aerie-dhcp-{host_uuid[:8]}-{site.l3}"
    fetch = ("import sys, urllib.request; "
             "print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())")
    deadline = time.monotonic() + within
    while True:
        (agent, *_) = agent_pids(site.host)
        done = subprocess.run(["nsenter", "-t", str(agent), "-m", "--", "ip", "netns", "exec",
                               namespace, "python3", "-c", fetch, f"http://{ip}{path}"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
        assert time.monotonic() < deadline, f"guest {ip} not answering: {done.stderr[-400:]}"
        time.sleep(0.5)


def test_add_a_real_host_and_run_a_real_vm_on_it(site):
    phases, tasks_seen = Phases(), []

    def note(progress: dict | None) -> None:
        detail = (progress or {}).get("detail")
        if detail and (not tasks_seen or tasks_seen[-1] != detail):
            tasks_seen.append(detail)

    job = site.add_kvm_host(site.host.address, site.hosts.password, on_progress=note)
    phases.done("AddKvmHost (Ansible, agent Connected)")
    assert job["state"] == "Succeeded", json.dumps(job["error"], indent=1)
    host = job["result"]
    assert host["status"] == "Connected" and host["agentPlaybookDigest"]
    # The job showed the playbook's tasks as they ran, numbered against the total.
    assert len(tasks_seen) >= 3, tasks_seen
    assert all(1 <= t["task"] <= t["tasks"] and t["taskName"] for t in tasks_seen)
    assert [t["task"] for t in tasks_seen] == sorted(t["task"] for t in tasks_seen)
    assert host["libvirtVersion"] and host["cpuNum"] >= 1
    # The agent runs inside the host, not on the control plane's side.
    assert agent_pids(site.host), "no aerie-agent process in the host's namespace"

    job = site.api.submit("POST", "/v1/vm-instances", {
        "name": "guest-1", "imageUuid": site.image, "instanceOfferingUuid": site.offering,
        "l3NetworkUuids": [site.l3], "systemTags": ["hostname::guest-1"]}, within=120)
    phases.done("CreateVmInstance to Running")
    assert job["state"] == "Succeeded", json.dumps(job["error"], indent=1)
    vm = job["result"]
    assert vm["state"] == "Running" and vm["hostUuid"] == host["uuid"]
    (nic,) = vm["vmNics"]
    ip = nic["ip"]

    seen = guest_view(site, host["uuid"], ip)
    phases.done("guest up with its DHCP lease")
    assert f"ip={ip} " in seen and f"mac={nic['mac']}" in seen, seen

    site.api.do("PUT", f"/v1/vm-instances/{vm['uuid']}/actions/stop", {"type": "cold"})
    phases.done("StopVmInstance (cold)")
    assert site.vm(vm["uuid"])["state"] == "Stopped"
    site.api.do("PUT", f"/v1/vm-instances/{vm['uuid']}/actions/start")
    phases.done("StartVmInstance")
    assert f"ip={ip} " in guest_view(site, host["uuid"], ip)
    phases.done("guest up again")

    assert "powering off" in guest_view(site, host["uuid"], ip, "/cgi-bin/poweroff")
    site.wait_vm_state(vm["uuid"], "Stopped", within=20)
    phases.done("guest powered itself off -> Stopped")

    site.api.do("DELETE", f"/v1/vm-instances/{vm['uuid']}")
    phases.done("DestroyVmInstance")
    site.api.do("PUT", f"/v1/vm-instances/{vm['uuid']}/actions/expunge")
    phases.done("ExpungeVmInstance")
    assert site.api.get(f"/v1/vm-instances/{vm['uuid']}").status_code == 404
    assert not (site.storage_dir / "vms" / vm["uuid"]).exists()
    # The network's last VM went: so did its DHCP server on the host, and its namespace.
    assert not Path(f"/run/netns/aerie-dhcp-{host['uuid'][:8]}-{site.l3}").exists()
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit()
                and "dnsmasq" in _cmdline(int(pid)) and host["uuid"] in _cmdline(int(pid))]
    phases.print("real KVM host")


def test_reconnect_deploys_again_only_when_the_playbook_changed(site):
    (host,) = _hosts_at(site, site.host.address)  # added by the test above
    assert host["status"] == "Connected"
    started = time.monotonic()
    job = site.api.submit("PUT", f"/v1/hosts/{host['uuid']}/actions/reconnect", within=60)
    assert job["state"] == "Succeeded", job
    assert job["result"]["agentPlaybookDigest"] == host["agentPlaybookDigest"]
    unchanged = time.monotonic() - started

    # The operator adds a task file: the digest changes, and the next reconnect runs the
    # playbook again (with the new task), restarts the agent with a new token, and ends
    # when that agent reports.
    marker = f"{site.hosts.root}/a-{host['uuid'][:8]}/operator-task-ran"
    (site.tasks_dir / "10-marker.yml").write_text(
        f"- name: Leave a marker\n  ansible.builtin.copy:\n    dest: {marker}\n"
        f"    content: \"ran\\n\"\n    mode: \"0644\"\n")
    before = agent_pids(site.host)
    started = time.monotonic()
    job = site.wait_job(site.api.http.put(
        f"/v1/hosts/{host['uuid']}/actions/reconnect").json()["jobUuid"], ADD_HOST_WITHIN)
    redeployed = time.monotonic() - started
    assert job["state"] == "Succeeded", json.dumps(job.get("error"), indent=1)
    assert job["result"]["status"] == "Connected"
    assert job["result"]["agentPlaybookDigest"] != host["agentPlaybookDigest"]
    assert Path(marker).read_text() == "ran\n"
    assert agent_pids(site.host) and agent_pids(site.host) != before  # a new agent process
    print(f"\nReconnectHost: {unchanged:.1f}s unchanged, {redeployed:.1f}s redeployed")


def test_add_host_at_an_unreachable_address_fails_cleanly(site):
    started = time.monotonic()
    job = site.add_kvm_host(site.hosts.unused_address(), site.hosts.password, within=120)
    took = time.monotonic() - started
    assert job["state"] == "Failed", job
    assert job["error"]["details"]["failedStep"] == "host.deploy-agent"
    assert "unreachable" in job["error"]["message"]
    assert site.hosts.unused_address() in job["error"]["message"]
    assert not _hosts_at(site, site.hosts.unused_address())
    print(f"\nunreachable host: failed in {took:.1f}s")


def test_add_host_with_a_wrong_password_fails_cleanly(site):
    started = time.monotonic()
    other = site.hosts.hosts[1]
    job = site.add_kvm_host(other.address, "not-" + site.hosts.password, within=120)
    took = time.monotonic() - started
    assert job["state"] == "Failed", job
    assert "authentication" in job["error"]["message"]
    assert "not-" + site.hosts.password not in json.dumps(job)
    assert not _hosts_at(site, other.address)
    print(f"\nwrong password: failed in {took:.1f}s")


def _hosts_at(site: Site, address: str) -> list[dict]:
    return site.api.http.get("/v1/hosts", params={"q": f"managementIp={address}"}).json()[
        "inventories"]
