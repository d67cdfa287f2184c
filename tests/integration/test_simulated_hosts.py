"""Simulator hosts run inside the embedded control plane: their commands run on the same
executor and simulator driver as `aerie-agent --driver simulator`, and they report in
batches spread over the report interval."""
from __future__ import annotations

import json

from chalicelib.agents import commands
from chalicelib.db.models import AgentCommand, Host


def add(api, cluster: str, name: str, **extra) -> dict:
    return api.do("POST", "/v1/hosts/simulator", {"clusterUuid": cluster, "name": name,
                                                  "cpuNum": 8, "memorySize": 2**34, **extra})


def test_simulator_hosts_connect_and_report_on_their_phase(api, control_plane):
    zone = api.do("POST", "/v1/zones", {"name": "sim"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c",
                                              "hypervisorType": "Simulator"})["uuid"]
    hosts = [add(api, cluster, f"sim-{n}")["uuid"] for n in range(20)]
    assert {api.get(f"/v1/hosts/{h}").json()["inventory"]["status"] for h in hosts} == {
        "Connecting"}
    api.do("PUT", "/v1/global-configurations/host/ping.interval", {"value": 4})
    fleet = control_plane.simulated_hosts
    fleet.tick(0)  # runs their queued `connect`: each host reports its facts
    seen = [api.get(f"/v1/hosts/{h}").json()["inventory"] for h in hosts]
    assert {s["status"] for s in seen} == {"Connected"}
    assert {s["cpuNum"] for s in seen} == {8}
    before = fleet.reports_sent
    for tick in range(1, 5):
        fleet.tick(tick)
    # Over one interval every host reports exactly once, a share of them each tick.
    assert fleet.reports_sent - before == len(hosts)


def test_injected_failures_come_back_as_failed_commands(api, control_plane):
    zone = api.do("POST", "/v1/zones", {"name": "sim"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
    host = add(api, cluster, "flaky", simulator={"failCommands": ["vm.start"]})["uuid"]
    with control_plane.db.session() as db:
        stored = json.loads(db.get(Host, host).simulator_spec)
        command = commands.send(db, host, "vm.start", {"uuid": "a" * 32})
    assert stored["fail_commands"] == ["vm.start"]
    control_plane.simulated_hosts.tick(0)
    with control_plane.db.session() as db:
        outcome = db.get(AgentCommand, command)
        assert outcome.state == "Failed" and "vm.start" in outcome.error


def test_a_disconnected_simulator_host_is_connected_again_by_its_next_answer(
        api, control_plane):
    zone = api.do("POST", "/v1/zones", {"name": "sim"})["uuid"]
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
    hosts = [add(api, cluster, f"sim-{n}")["uuid"] for n in range(3)]
    fleet = control_plane.simulated_hosts
    fleet.tick(0)
    with control_plane.db.session() as db:
        db.get(Host, hosts[0]).status = "Disconnected"
        pings = [commands.send(db, host, "ping") for host in hosts]
    fleet.run_commands()  # a ping's answer is a sign of life, not a full sync
    with control_plane.db.session() as db:
        assert [db.get(AgentCommand, c).state for c in pings] == ["Succeeded"] * 3
    assert {api.get(f"/v1/hosts/{h}").json()["inventory"]["status"] for h in hosts} == {
        "Connected"}
