"""A real `aerie-agent` process, on libvirt's test driver, against a real `aerie up`:
the host connects, commands reach libvirt, silence disconnects it, a wrong token is refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD

if os.environ.get("CI", "").lower() == "true":
    import libvirt  # noqa: F401  (under CI it must be there: make test installs it)
else:
    pytest.importorskip("libvirt",
                        reason="libvirt-python is not installed (make test installs it)")
pytestmark = pytest.mark.slow

AGENT = str(Path(sys.executable).with_name("aerie-agent"))
TEST_DOMAIN = "6695eb01f6a4830479aa97f2502e193f"  # the domain libvirt's test driver starts with


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        token = self.http.put("/v1/accounts/login", json={
            "accountName": "admin", "password": ADMIN_PASSWORD}).json()["inventory"]["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def do(self, method: str, path: str, body: dict | None = None) -> dict:
        job_uuid = self.http.request(method, path, json=body).json()["jobUuid"]
        deadline = time.monotonic() + 20
        while (job := self.http.get(f"/v1/api-jobs/{job_uuid}").json())["state"] in (
                "Waiting", "Running"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert job["state"] == "Succeeded", job
        return job["result"]

    def host(self, uuid: str) -> dict:
        return self.http.get(f"/v1/hosts/{uuid}").json()["inventory"]

    def wait_status(self, uuid: str, status: str, within: float) -> float:
        started = time.monotonic()
        while self.host(uuid)["status"] != status:
            assert time.monotonic() - started < within, f"host not {status} in {within}s"
            time.sleep(0.1)
        return time.monotonic() - started


def start_agent(url: str, host: dict, tmp_path: Path, token: str | None = None):
    log = (tmp_path / f"agent-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(
        [AGENT, "--url", url, "--host-uuid", host["uuid"], "--token",
         token or host["agentToken"], "--driver", "libvirt", "--libvirt-uri", "test:///default",
         "--state-dir", str(tmp_path / "agent-state")],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def agent_log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("agent-*.log")))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def plane(tmp_path):
    server = Server({"AERIE_DB_URL": f"sqlite:///{tmp_path / 'cp.db'}",
                     "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, tmp_path)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def test_agent_connects_reports_libvirt_and_is_tracked(plane, tmp_path):
    api = Client(plane.url)
    zone = api.do("POST", "/v1/zones", {"name": "z"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
    for name, value in (("ping.interval", 1), ("ping.maxFailure", 2), ("ping.timeout", 0)):
        api.do("PUT", f"/v1/global-configurations/host/{name}", {"value": value})
    host = api.do("POST", "/v1/hosts/kvm", {"clusterUuid": cluster, "name": "kvm-1",
                                            "managementIp": "127.0.0.1", "deployAgent": False})

    agent = start_agent(plane.url, host, tmp_path)
    try:
        connected_in = api.wait_status(host["uuid"], "Connected", within=15)
        seen = api.host(host["uuid"])
        # Facts come from libvirt (its test driver's imaginary 16-CPU host).
        assert seen["cpuNum"] == 16 and seen["libvirtVersion"]
        # The VM libvirt runs but Aerie never made is reported, not touched.
        assert TEST_DOMAIN in (seen["strangerVmUuids"] or "")

        # A command reaches the agent and runs against libvirt: two `connect`s (one queued
        # by AddKvmHost, one by ReconnectHost), each answered with libvirt's facts.
        api.do("PUT", f"/v1/hosts/{host['uuid']}/actions/reconnect")
        deadline = time.monotonic() + 10
        while agent_log(tmp_path).count(" connect: ok") < 2:
            assert time.monotonic() < deadline, agent_log(tmp_path)
            time.sleep(0.1)
        stop(agent)
        disconnected_in = api.wait_status(host["uuid"], "Disconnected", within=10)
        assert disconnected_in >= 0.5  # not before the configured 2 missed reports

        agent = start_agent(plane.url, host, tmp_path)
        api.wait_status(host["uuid"], "Connected", within=15)
    finally:
        stop(agent)
    print(f"\nconnected in {connected_in:.2f}s, disconnected {disconnected_in:.2f}s after "
          "the agent stopped")


def test_an_agent_with_a_wrong_token_is_refused_and_says_so(plane, tmp_path):
    api = Client(plane.url)
    zone = api.do("POST", "/v1/zones", {"name": "z"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
    host = api.do("POST", "/v1/hosts/kvm", {"clusterUuid": cluster, "name": "kvm-1",
                                            "managementIp": "127.0.0.1", "deployAgent": False})
    agent = start_agent(plane.url, host, tmp_path, token="not-the-token")
    try:
        time.sleep(2)
        assert agent.poll() is None  # it keeps trying; the operator may fix the token
        assert api.host(host["uuid"])["status"] == "Connecting"
    finally:
        stop(agent)
    assert "403" in agent_log(tmp_path)
