"""The control plane's side of host agents, driven through the HTTP API by a scripted agent:
one-time tokens, token-scoped calls, command delivery, reports, host status, VM state sync."""
from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest

from chalicelib import events
from chalicelib.agents import commands
from chalicelib.agents.tracker import track
from chalicelib.db.base import utcnow
from chalicelib.db.models import AgentCommand, Host, VmInstance

ADDRESSES = itertools.count(2)


@pytest.fixture
def cluster(api) -> str:
    zone = api.do("POST", "/v1/zones", {"name": "agents"})["uuid"]
    return api.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "kvm"})["uuid"]


@pytest.fixture
def published():
    seen: list[tuple[str, dict]] = []
    unsubscribe = events.subscribe(lambda name, payload: seen.append((name, payload)))
    yield seen
    unsubscribe()


def add_host(api, cluster: str, name: str = "kvm-1") -> tuple[dict, str]:
    job = api.submit("POST", "/v1/hosts/kvm", {
        "clusterUuid": cluster, "name": name, "managementIp": f"10.9.0.{next(ADDRESSES)}",
        "password": "ssh-secret", "deployAgent": False})
    assert job["state"] == "Succeeded", job
    return job["result"], job["uuid"]


def agent_call(api, method: str, host: str, token: str, what: str, **kwargs):
    return api.request(method, f"/v1/hosts/{host}/agent/{what}", token="",
                       headers={"Authorization": f"Agent {token}"}, **kwargs)


def test_add_host_shows_the_agent_token_once_and_never_the_ssh_password(api, cluster):
    host, job_uuid = add_host(api, cluster)
    assert host["status"] == "Connecting"
    assert host["agentToken"] and host["uuid"] in host["agentCommand"]
    assert "ssh-secret" not in str(host) and "tokenHash" not in host
    again = api.get(f"/v1/api-jobs/{job_uuid}").json()["result"]
    assert "agentToken" not in again and again["uuid"] == host["uuid"]
    assert "ssh-secret" not in api.get(f"/v1/hosts/{host['uuid']}").text


def test_deploying_the_agent_without_ssh_credentials_is_refused_at_once(api, cluster):
    reply = api.request("POST", "/v1/hosts/kvm", json={
        "clusterUuid": cluster, "name": "kvm-x", "managementIp": "10.9.0.3"})
    assert reply.status_code == 400
    assert reply.json()["error"]["details"]["field"] == "password"
    assert api.get("/v1/hosts").json()["inventories"] == []


def test_an_agent_may_act_only_for_its_own_host(api, cluster):
    first, _ = add_host(api, cluster, "kvm-1")
    second, _ = add_host(api, cluster, "kvm-2")
    own = agent_call(api, "GET", first["uuid"], first["agentToken"], "commands")
    assert own.status_code == 200
    assert agent_call(api, "GET", second["uuid"], first["agentToken"],
                      "commands").status_code == 403
    assert agent_call(api, "POST", second["uuid"], first["agentToken"], "reports",
                      json={}).status_code == 403
    assert agent_call(api, "GET", first["uuid"], "forged", "commands").status_code == 403
    missing = api.request("GET", f"/v1/hosts/{first['uuid']}/agent/commands", token="")
    assert missing.status_code == 401
    # A user's session is not an agent's token either.
    assert api.get(f"/v1/hosts/{first['uuid']}/agent/commands").status_code == 401


def test_commands_reach_the_agent_and_its_report_connects_the_host(api, cluster, published):
    host, _ = add_host(api, cluster)
    uuid, token = host["uuid"], host["agentToken"]
    commands = agent_call(api, "GET", uuid, token, "commands").json()["commands"]
    assert [c["name"] for c in commands] == ["connect"]
    reply = agent_call(api, "POST", uuid, token, "reports", json={
        "results": [{"id": commands[0]["id"], "ok": True, "result": {"cpuNum": 8}}],
        "facts": {"cpuNum": 8, "memoryBytes": 16 * 2**30, "osVersion": "Debian 12",
                  "libvirtVersion": "9.0.0", "qemuVersion": "7.2.0",
                  "architecture": "x86_64"},
        "vms": []})
    assert reply.json() == {"pingInterval": 60}
    seen = api.get(f"/v1/hosts/{uuid}").json()["inventory"]
    assert seen["status"] == "Connected"
    assert (seen["cpuNum"], seen["totalMemoryCapacity"]) == (8, 16 * 2**30)
    assert (seen["osVersion"], seen["libvirtVersion"]) == ("Debian 12", "9.0.0")
    assert ("host.status.changed", {"hostUuid": uuid, "from": "Connecting",
                                    "to": "Connected"}) in published
    # Answered commands are not handed out again; a repeated answer changes nothing.
    assert agent_call(api, "GET", uuid, token, "commands").json()["commands"] == []


def test_a_report_finishes_only_its_hosts_commands_and_each_only_once(
        api, cluster, control_plane, published):
    first, _ = add_host(api, cluster, "kvm-1")
    second, _ = add_host(api, cluster, "kvm-2")
    with control_plane.db.session() as db:
        start = commands.send(db, first["uuid"], "vm.start", {"uuid": "v" * 32})
    connect, started = (c["id"] for c in agent_call(
        api, "GET", first["uuid"], first["agentToken"], "commands").json()["commands"])
    assert started == start
    others = agent_call(api, "GET", second["uuid"], second["agentToken"], "commands").json()
    other = others["commands"][0]["id"]
    published.clear()
    agent_call(api, "POST", first["uuid"], first["agentToken"], "reports", json={"results": [
        {"id": connect, "ok": True, "result": {"cpuNum": 8}},
        {"id": start, "ok": False, "error": "qemu died"},
        {"id": other, "ok": True, "result": {}},  # another host's command: ignored
        {"id": "f" * 32, "ok": True}]})  # no such command: ignored
    # A repeated answer changes nothing, even one that says otherwise.
    agent_call(api, "POST", first["uuid"], first["agentToken"], "reports", json={
        "results": [{"id": start, "ok": True, "result": {"state": "Running"}}]})
    with control_plane.db.session() as db:
        rows = {uuid: db.get(AgentCommand, uuid) for uuid in (connect, start, other)}
        outcomes = {uuid: (c.state, c.result, c.error) for uuid, c in rows.items()}
        assert all(rows[uuid].finished_date is not None for uuid in (connect, start))
    assert outcomes == {connect: ("Succeeded", '{"cpuNum": 8}', None),
                        start: ("Failed", None, "qemu died"), other: ("Sent", None, None)}
    finished = sorted((p for n, p in published if n == commands.COMMAND_FINISHED),
                      key=lambda p: p["name"])
    assert finished == [
        {"commandUuid": connect, "hostUuid": first["uuid"], "name": "connect",
         "state": "Succeeded", "ok": True, "result": {"cpuNum": 8}, "error": None},
        {"commandUuid": start, "hostUuid": first["uuid"], "name": "vm.start",
         "state": "Failed", "ok": False, "result": None, "error": "qemu died"}]


def test_recorded_outcomes_of_many_hosts_finish_what_each_host_was_sent(
        api, cluster, control_plane):
    first, _ = add_host(api, cluster, "kvm-1")
    second, _ = add_host(api, cluster, "kvm-2")
    with control_plane.db.session() as db:
        ids = {h["uuid"]: commands.send(db, h["uuid"], "ping") for h in (first, second)}
    a, b = first["uuid"], second["uuid"]
    with control_plane.db.session() as db:
        finished = commands.record_outcomes(db, [
            (a, ids[a], True, {"n": 1}, None), (a, ids[b], True, None, None),
            (b, ids[b], False, None, "down"), (b, ids[b], False, None, "down")])
    assert sorted((c.host_uuid, c.uuid, c.name, c.state, c.result, c.error)
                  for c in finished) == sorted([(a, ids[a], "ping", "Succeeded", '{"n": 1}', None),
                                                (b, ids[b], "ping", "Failed", None, "down")])
    with control_plane.db.session() as db:
        assert commands.record_outcomes(db, [(a, ids[a], False, None, "late")]) == []
        assert db.get(AgentCommand, ids[a]).state == "Succeeded"


def test_an_unanswered_command_is_sent_again(api, cluster):
    host, _ = add_host(api, cluster)
    first = agent_call(api, "GET", host["uuid"], host["agentToken"], "commands").json()
    again = agent_call(api, "GET", host["uuid"], host["agentToken"], "commands").json()
    assert [c["id"] for c in again["commands"]] == [c["id"] for c in first["commands"]]


def test_a_silent_host_is_disconnected_and_comes_back_when_it_reports(
        api, cluster, control_plane, published):
    host, _ = add_host(api, cluster)
    uuid, token = host["uuid"], host["agentToken"]
    agent_call(api, "POST", uuid, token, "reports", json={"facts": {"cpuNum": 2}})
    api.do("PUT", "/v1/global-configurations/host/ping.interval", {"value": 2})
    with control_plane.db.session() as db:
        assert track(db, now=utcnow() + timedelta(seconds=10)) == []  # 2 × 3 + 5 = 11 s
        assert track(db, now=utcnow() + timedelta(seconds=12)) == [uuid]
    assert api.get(f"/v1/hosts/{uuid}").json()["inventory"]["status"] == "Disconnected"
    agent_call(api, "POST", uuid, token, "reports", json={})
    assert api.get(f"/v1/hosts/{uuid}").json()["inventory"]["status"] == "Connected"
    assert [p["to"] for n, p in published if n == "host.status.changed"] == [
        "Connected", "Disconnected", "Connected"]


def test_vm_state_follows_the_host_except_while_an_operation_runs(
        api, cluster, control_plane, published):
    host, _ = add_host(api, cluster)
    uuid, token = host["uuid"], host["agentToken"]
    with control_plane.db.session() as db:
        account = db.get(Host, uuid).account_uuid
        for name in ("crashed", "steady"):
            db.add(VmInstance(uuid=name.ljust(32, "0"), name=name, host_uuid=uuid,
                              account_uuid=account, state="Running", cpu_num=1,
                              memory_size=2**30))
    crashed, steady = "crashed".ljust(32, "0"), "steady".ljust(32, "0")
    agent_call(api, "POST", uuid, token, "reports", json={"vms": [
        {"uuid": steady, "state": "Running"}, {"uuid": crashed, "state": "Stopped"},
        {"uuid": "f" * 32, "state": "Running"}]})
    with control_plane.db.session() as db:
        assert db.get(VmInstance, crashed).state == "Stopped"
        assert db.get(VmInstance, steady).state == "Running"
        assert db.get(Host, uuid).stranger_vm_uuids == f'["{"f" * 32}"]'
    assert ("vm.state.changed", {"vmUuid": crashed, "hostUuid": uuid, "from": "Running",
                                 "to": "Stopped", "by": "sync"}) in published
    assert any(n == "host.strangers.found" for n, _ in published)


def test_sync_leaves_a_vm_alone_while_an_operation_on_it_is_queued(api, cluster, control_plane):
    from chalicelib.db.models import ApiJob

    host, _ = add_host(api, cluster)
    uuid, token = host["uuid"], host["agentToken"]
    vm = "busy".ljust(32, "0")
    with control_plane.db.session() as db:
        account = db.get(Host, uuid).account_uuid
        db.add(VmInstance(uuid=vm, name="busy", host_uuid=uuid, account_uuid=account,
                          state="Running", cpu_num=1, memory_size=2**30))
        db.add(ApiJob(api_name="StopVmInstance", account_uuid=account, request="{}",
                      signature=f"vm:{vm}", state="Waiting"))
    agent_call(api, "POST", uuid, token, "reports",
               json={"vms": [{"uuid": vm, "state": "Stopped"}]})
    with control_plane.db.session() as db:
        assert db.get(VmInstance, vm).state == "Running"


def test_capacity_is_facts_times_ratio_less_what_running_vms_hold(api, cluster, control_plane):
    host, _ = add_host(api, cluster)
    uuid, token = host["uuid"], host["agentToken"]
    with control_plane.db.session() as db:
        account = db.get(Host, uuid).account_uuid
        for name, state in (("running", "Running"), ("stopped", "Stopped")):
            db.add(VmInstance(uuid=name.ljust(32, "0"), name=name, host_uuid=uuid,
                              account_uuid=account, state=state, cpu_num=2,
                              memory_size=2**30))
    facts = {"cpuNum": 8, "memoryBytes": 16 * 2**30}
    vms = [{"uuid": "running".ljust(32, "0"), "state": "Running"},
           {"uuid": "stopped".ljust(32, "0"), "state": "Stopped"}]

    def report_and_read() -> dict:
        agent_call(api, "POST", uuid, token, "reports", json={"facts": facts, "vms": vms})
        return api.get(f"/v1/hosts/{uuid}").json()["inventory"]

    seen = report_and_read()
    assert (seen["totalCpuCapacity"], seen["availableCpuCapacity"]) == (80, 78)
    assert seen["availableMemoryCapacity"] == 15 * 2**30
    api.do("PUT", "/v1/global-configurations/host/cpu.overProvisioning.ratio", {"value": 2})
    with control_plane.db.session() as db:
        db.get(Host, uuid).available_cpu_capacity = -999  # drift, however it came about
    seen = report_and_read()
    assert (seen["totalCpuCapacity"], seen["availableCpuCapacity"]) == (16, 14)


def test_a_fleet_of_simulated_agents_connects_through_the_api(api, cluster, wsgi_app, tmp_path):
    import httpx

    from hostagent.fleet import Fleet, read_hosts
    from hostagent.http_transport import HttpTransport

    hosts = [add_host(api, cluster, f"fleet-{n}")[0] for n in range(3)]
    # Short report intervals keep each agent's long poll short, so the fleet stops quickly.
    api.do("PUT", "/v1/global-configurations/host/ping.interval", {"value": 1})
    listing = tmp_path / "hosts.txt"
    listing.write_text("# uuid token\n" + "".join(f"{h['uuid']} {h['agentToken']}\n"
                                                   for h in hosts))
    fleet = Fleet(read_hosts(listing), lambda host: HttpTransport(
        "http://aerie", host.uuid, host.token, http=httpx.WSGITransport(app=wsgi_app)))
    fleet.start()
    try:
        deadline = time.monotonic() + 15
        while {api.get(f"/v1/hosts/{h['uuid']}").json()["inventory"]["status"]
               for h in hosts} != {"Connected"}:
            assert time.monotonic() < deadline, "the fleet's hosts did not connect"
            time.sleep(0.05)
    finally:
        fleet.close()


def test_an_embedded_control_plane_issues_no_queue_credentials(api, cluster):
    host, _ = add_host(api, cluster)
    reply = agent_call(api, "GET", host["uuid"], host["agentToken"], "queue")
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "NoAgentQueue"
    assert "over HTTPS" in reply.json()["error"]["message"]
