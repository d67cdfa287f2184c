"""Commands through the executor: args checked, results shaped, ids remembered."""
from __future__ import annotations

import json

import pytest

from hostagent.drivers.simulator import SimulatorDriver
from hostagent.executor import CommandExecutor
from hostagent.journal import CommandJournal
from hostagent.protocol import CommandName

VM = "5f0e1d2c3b4a49788796a5b4c3d2e1f0"
VM_ARGS = {"uuid": VM, "name": "db", "cpuNum": 1, "memorySize": 256 << 20}


def run(executor: CommandExecutor, name: str, args=None, command_id: str = "c"):
    return executor.execute({"id": command_id, "name": name, "args": args or {}})


@pytest.fixture
def executor() -> CommandExecutor:
    return CommandExecutor(SimulatorDriver(cpu_num=4, memory_bytes=1 << 30))


def test_vm_lifecycle_results(executor):
    assert run(executor, "vm.create", VM_ARGS, "1")["result"] == {"state": "Running"}
    assert run(executor, "vm.stop", {"uuid": VM}, "2")["result"] == {"state": "Stopped"}
    assert run(executor, "vm.stop", {"uuid": VM, "force": True}, "3")["ok"] is True
    assert run(executor, "vm.start", {"uuid": VM}, "4")["result"] == {"state": "Running"}
    assert run(executor, "vm.reboot", {"uuid": VM}, "5")["result"] == {"state": "Running"}
    assert run(executor, "vm.sync", {}, "6")["result"] == {
        "vms": [{"uuid": VM, "state": "Running"}]}
    assert run(executor, "vm.destroy", {"uuid": VM}, "7") == {
        "id": "7", "ok": True, "result": {}, "error": None}
    assert run(executor, "vm.sync", {}, "8")["result"] == {"vms": []}


def test_create_without_start_leaves_the_vm_stopped(executor):
    assert run(executor, "vm.create", {**VM_ARGS, "start": False})["result"] == {
        "state": "Stopped"}


def test_destroying_an_absent_vm_succeeds(executor):
    assert run(executor, "vm.destroy", {"uuid": VM})["ok"] is True


def test_starting_an_absent_vm_fails_clearly(executor):
    result = run(executor, "vm.start", {"uuid": VM})
    assert result["ok"] is False and result["error"] == f"VM {VM} not found on this host"


def test_facts_from_connect_and_host_facts(executor):
    facts = run(executor, "connect")["result"]
    assert facts == run(executor, "host.facts", command_id="d")["result"]
    assert facts["cpuNum"] == 4 and facts["memoryBytes"] == 1 << 30
    assert set(facts) >= {"cpuNum", "memoryBytes", "os", "osVersion", "kernel",
                          "libvirtVersion", "qemuVersion", "architecture", "hostname"}


@pytest.mark.parametrize(("args", "message"), [
    ({"name": "x", "cpuNum": 1, "memorySize": 1}, "vm.create: missing argument 'uuid'"),
    ({**VM_ARGS, "cpuNum": "two"}, "vm.create: 'cpuNum' must be an integer, not str"),
    ({**VM_ARGS, "cpuNum": True}, "vm.create: 'cpuNum' must be an integer"),
    ({**VM_ARGS, "memorySize": 0}, "must be positive"),
    ({**VM_ARGS, "volumes": [{"uuid": "v", "format": "qcow2", "deviceId": 0}]},
     "vm.create: volumes[0]: missing argument 'path'"),
    ({**VM_ARGS, "nics": "br0"}, "'nics' must be a list of objects"),
])
def test_bad_vm_create_args_are_reported_not_acted_on(executor, args, message):
    result = run(executor, "vm.create", args)
    assert result["ok"] is False and message in result["error"]
    assert executor.driver.vms == {}


def test_args_that_are_not_an_object_are_an_error(executor):
    result = executor.execute({"id": "x", "name": "vm.start", "args": ["uuid"]})
    assert result == {"id": "x", "ok": False, "result": None,
                      "error": "vm.start: args must be a JSON object"}


def test_a_missing_name_is_an_unknown_command(executor):
    result = executor.execute({"id": "x", "name": None, "args": {}})  # type: ignore[typeddict-item]
    assert result["ok"] is False and result["error"].startswith("unknown command None")


def test_volume_and_bridge_commands_on_the_simulator(executor):
    created = run(executor, "volume.create", {"path": "/v/a.qcow2", "size": 1 << 30}, "1")
    assert created["result"]["path"] == "/v/a.qcow2"
    assert created["result"]["actualSize"] > 0
    again = run(executor, "volume.create", {"path": "/v/a.qcow2", "size": 1 << 30}, "2")
    assert again["result"] == created["result"]  # idempotent for the same volume
    clash = run(executor, "volume.create", {"path": "/v/a.qcow2", "size": 2 << 30}, "3")
    assert clash["ok"] is False and "already exists" in clash["error"]
    assert run(executor, "volume.delete", {"path": "/v/a.qcow2"}, "4")["ok"] is True
    assert run(executor, "volume.delete", {"path": "/v/a.qcow2"}, "5")["ok"] is True
    assert executor.driver.volumes == {}
    bridge = run(executor, "l2.bridge.setup", {"bridge": "br_eth0_10",
                                               "physicalInterface": "eth0", "vlan": 10}, "6")
    assert bridge["result"] == {"bridge": "br_eth0_10"}
    assert executor.driver.bridges["br_eth0_10"].vlan == 10
    bad_vlan = run(executor, "l2.bridge.setup", {"bridge": "b", "vlan": 5000}, "7")
    assert "'vlan' must be between 1 and 4094" in bad_vlan["error"]
    no_size = run(executor, "volume.create", {"path": "/v/b.qcow2"}, "8")
    assert "missing argument 'size'" in no_size["error"]


def test_a_driver_bug_becomes_an_error_result_not_a_crash(executor):
    def broken(uuid):
        raise KeyError("oops")

    executor.driver.start_vm = broken
    result = run(executor, "vm.start", {"uuid": VM})
    assert result["ok"] is False
    assert result["error"] == "vm.start: internal agent error: KeyError: 'oops'"


def test_every_protocol_command_has_a_handler(executor):
    for name in CommandName:
        result = run(executor, name.value, {}, f"id-{name}")
        assert "unknown command" not in (result["error"] or ""), name


def test_failed_results_are_remembered_too(executor):
    executor.driver.fail_command("ping", times=1)
    first = run(executor, "ping", command_id="p")
    assert first["ok"] is False
    assert run(executor, "ping", command_id="p") == first
    assert run(executor, "ping", command_id="q")["ok"] is True


def test_journal_is_bounded_and_persisted(tmp_path):
    path = tmp_path / "j.json"
    journal = CommandJournal(path, capacity=3)
    for i in range(5):
        journal.record({"id": f"c{i}", "ok": True, "result": {"i": i}, "error": None})
    assert len(journal) == 3 and "c1" not in journal and "c4" in journal
    reloaded = CommandJournal(path, capacity=3)
    assert [reloaded.get(f"c{i}") is not None for i in range(5)] == [False] * 2 + [True] * 3
    assert reloaded.get("c4")["result"] == {"i": 4}
    assert len(json.loads(path.read_text())["results"]) == 3


def test_a_corrupt_journal_is_set_aside_and_the_agent_starts(tmp_path):
    path = tmp_path / "j.json"
    path.write_text("{not json")
    journal = CommandJournal(path)
    assert len(journal) == 0
    assert (tmp_path / "j.json.corrupt").read_text() == "{not json"


def test_a_vms_volumes_are_created_and_deleted_in_one_command():
    driver = SimulatorDriver()
    executor = CommandExecutor(driver)
    created = executor.execute({"id": "v-1", "name": "volumes.create", "args": {"volumes": [
        {"path": "/ps/vm/root.qcow2", "size": 2**30},
        {"path": "/ps/vm/data.qcow2", "size": 2**31, "format": "raw"}]}})
    assert created["ok"], created
    assert [v["path"] for v in created["result"]["volumes"]] == ["/ps/vm/root.qcow2",
                                                                 "/ps/vm/data.qcow2"]
    assert set(driver.volumes) == {"/ps/vm/root.qcow2", "/ps/vm/data.qcow2"}
    deleted = executor.execute({"id": "v-2", "name": "volumes.delete",
                                "args": {"paths": ["/ps/vm/root.qcow2", "/ps/vm/data.qcow2"]}})
    assert deleted["ok"] and driver.volumes == {}


def test_a_bad_volume_in_a_batch_is_named():
    executor = CommandExecutor(SimulatorDriver())
    outcome = executor.execute({"id": "v-1", "name": "volumes.create", "args": {"volumes": [
        {"path": "/ps/a.qcow2", "size": 1}, {"path": "/ps/b.qcow2"}]}})
    assert not outcome["ok"] and "volumes[1]" in outcome["error"] and "size" in outcome["error"]


VM_WITH_BRIDGED_NIC = {"uuid": "c" * 32, "name": "web", "cpuNum": 1, "memorySize": 2**28,
                       "nics": [{"uuid": "n" * 32, "mac": "fa:16:3e:00:00:01",
                                 "bridge": "br_eth1_42", "physicalInterface": "eth1",
                                 "vlan": 42, "deviceId": 0}]}


def test_a_vm_gets_its_bridges_before_it_is_created():
    driver = SimulatorDriver()
    outcome = CommandExecutor(driver).execute(
        {"id": "c-1", "name": "vm.create", "args": VM_WITH_BRIDGED_NIC})
    assert outcome["ok"], outcome
    bridge = driver.bridges["br_eth1_42"]
    assert (bridge.physical_interface, bridge.vlan) == ("eth1", 42)


def test_start_with_the_whole_spec_defines_a_vm_the_host_lost():
    driver = SimulatorDriver()
    executor = CommandExecutor(driver)
    lost = executor.execute({"id": "s-1", "name": "vm.start", "args": {"uuid": "c" * 32}})
    assert not lost["ok"] and "not found" in lost["error"]
    again = executor.execute({"id": "s-2", "name": "vm.start", "args": VM_WITH_BRIDGED_NIC})
    assert again["ok"] and again["result"] == {"state": "Running"}
    assert driver.vms["c" * 32].spec.nics[0].vlan == 42


DHCP_NIC = {"uuid": "n", "mac": "fa:16:3e:00:00:01", "bridge": "br_eth0", "deviceId": 0,
            "physicalInterface": "eth0", "ip": "10.0.0.23",
            "dhcp": {"l3NetworkUuid": "0123456789abcdef0123456789abcdef",
                     "serverIp": "10.0.0.2", "prefixLength": 24, "gateway": "10.0.0.1",
                     "dns": ["8.8.8.8"], "dnsDomain": "corp.example", "hostname": "web-1"}}


def test_a_nic_asking_for_dhcp_is_read_into_the_spec(executor):
    assert run(executor, "vm.create", {**VM_ARGS, "nics": [DHCP_NIC]})["ok"] is True
    nic = executor.driver.vms[VM].spec.nics[0]
    assert nic.ip == "10.0.0.23" and nic.dhcp.dns == ("8.8.8.8",)
    assert (nic.dhcp.server_ip, nic.dhcp.prefix_length, nic.dhcp.hostname) == (
        "10.0.0.2", 24, "web-1")


@pytest.mark.parametrize(("change", "message"), [
    ({"ip": None}, "needs its 'ip'"),
    ({"ip": "10.0.1.5"}, "'ip' 10.0.1.5 is not an address the DHCP server at 10.0.0.2/24"),
    ({"ip": "10.0.0.2"}, "is not an address the DHCP server"),
    ({"mac": "fa:16:3e:00:00:01\ndhcp-script=/x"}, "'mac' must be six hex pairs"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "serverIp": "10.0.0"}}, "'serverIp' must be an IPv4"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "prefixLength": 32}}, "'prefixLength' must be between"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "dns": ["8.8.8.8,9.9.9.9"]}}, "'dns' must be an IPv4"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "hostname": "web 1"}}, "'hostname' must be a host name"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "dnsDomain": "a..b"}}, "'dnsDomain' must be a domain"),
    ({"dhcp": {**DHCP_NIC["dhcp"], "l3NetworkUuid": "../etc"}}, "'l3NetworkUuid' must be"),
    ({"dhcp": "yes"}, "'dhcp' must be an object"),
])
def test_dhcp_args_that_could_not_be_served_safely_are_refused(executor, change, message):
    nic = {key: value for key, value in {**DHCP_NIC, **change}.items() if value is not None}
    result = run(executor, "vm.create", {**VM_ARGS, "nics": [nic]})
    assert result["ok"] is False and "nics[0]: " in result["error"]
    assert message in result["error"], result["error"]
    assert executor.driver.vms == {}
