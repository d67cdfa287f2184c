"""A real `aerie-agent` process, on libvirt's test driver, against a real `aerie up`:
the host connects, commands reach libvirt, silence disconnects it, a wrong token is refused."""
from __future__ import annotations

import os
import time

import pytest

from tests.support.agent_process import Client, agent_log, control_plane, start_agent, stop

if os.environ.get("CI", "").lower() == "true":
    import libvirt  # noqa: F401  (under CI it must be there: make test installs it)
else:
    pytest.importorskip("libvirt",
                        reason="libvirt-python is not installed (make test installs it)")
pytestmark = pytest.mark.slow

TEST_DOMAIN = "6695eb01f6a4830479aa97f2502e193f"  # the domain libvirt's test driver starts with


@pytest.fixture
def plane(tmp_path):
    with control_plane(tmp_path) as server:
        yield server


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
