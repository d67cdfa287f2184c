"""The agent loop with the simulator on a fake clock, over both transports it has in
production terms: in memory (as the HTTP transport behaves) and SQS (moto)."""
from __future__ import annotations

import logging
import random
import threading

import boto3
import pytest
from moto import mock_aws

from hostagent.agent import Agent
from hostagent.backoff import Backoff
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.journal import CommandJournal
from hostagent.memory_transport import MemoryTransport
from hostagent.protocol import DEFAULT_PING_INTERVAL, MAX_WAIT_SECONDS
from hostagent.transport import RejectedError, TransportError
from tests.support.agent_transports import SqsHarness

VM_UUID = "0b5c4d0e8a3f4c2e9d1a6b7c8d9e0f1a"
VM_ARGS = {"uuid": VM_UUID, "name": "web-1", "cpuNum": 2, "memorySize": 512 << 20,
           "volumes": [{"uuid": "v" * 32, "path": "/vols/root.qcow2", "format": "qcow2",
                        "deviceId": 0}],
           "nics": [{"uuid": "n" * 32, "mac": "52:54:00:12:34:56", "bridge": "br_l2",
                     "deviceId": 0}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqs"])
def new_transport(request, clock, monkeypatch):
    """Makes the transport each test's agent talks through (a long poll idles the clock)."""
    if request.param == "memory":
        yield lambda ping_interval=None: MemoryTransport(ping_interval, idle=clock.sleep)
        return
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        made: list[SqsHarness] = []

        def make(ping_interval=None):
            url = sqs.create_queue(QueueName=f"aerie-host-{len(made)}")["QueueUrl"]
            made.append(SqsHarness(sqs, url, ping_interval, idle=clock.sleep))
            return made[-1]
        yield make


@pytest.fixture
def make_agent(new_transport):
    def make(clock: FakeClock, driver: SimulatorDriver | None = None, transport=None,
             journal: CommandJournal | None = None):
        transport = transport or new_transport()
        agent = Agent(driver or SimulatorDriver(), transport, journal=journal, clock=clock,
                      sleep=clock.sleep, backoff=Backoff(rng=random.Random(7)))
        return agent, transport
    return make


def test_first_step_is_a_full_sync_with_facts_and_vms(clock, make_agent):
    driver = SimulatorDriver(cpu_num=8, memory_bytes=16 << 30)
    agent, transport = make_agent(clock, driver)
    agent.step()
    assert len(transport.reports) == 1
    first = transport.reports[0]
    assert first["results"] == []
    assert first["facts"]["cpuNum"] == 8 and first["facts"]["memoryBytes"] == 16 << 30
    assert first["vms"] == []


def test_commands_are_executed_and_their_results_reported(clock, make_agent):
    agent, transport = make_agent(clock)
    agent.step()  # initial sync
    create = transport.push("vm.create", VM_ARGS)
    ping = transport.push("ping")
    agent.step()
    report = transport.reports[-1]
    assert report["facts"] is None and report["vms"] is None
    assert report["results"] == [
        {"id": create, "ok": True, "result": {"state": "Running"}, "error": None},
        {"id": ping, "ok": True, "result": {}, "error": None},
    ]
    assert agent.outbox == []


def test_unknown_command_is_answered_with_an_error(clock, make_agent):
    agent, transport = make_agent(clock)
    agent.step()
    command_id = transport.push("vm.teleport", {"uuid": VM_UUID})
    agent.step()
    (result,) = transport.results
    assert result["id"] == command_id and result["ok"] is False and result["result"] is None
    assert "unknown command 'vm.teleport'" in result["error"]
    assert "vm.create" in result["error"]  # says what it does know


def test_redelivered_command_is_not_executed_twice(clock, make_agent):
    driver = SimulatorDriver()
    agent, transport = make_agent(clock, driver)
    agent.step()
    transport.push("vm.create", VM_ARGS, command_id="c-1")
    agent.step()
    driver.stop_vm(VM_UUID)  # someone stopped it since; a second create would start it again
    transport.push("vm.create", VM_ARGS, command_id="c-1")
    agent.step()
    assert driver.command_counts["vm.create"] == 1
    assert driver.vms[VM_UUID].state.value == "Stopped"
    first, again = transport.results
    assert again == first == {"id": "c-1", "ok": True, "result": {"state": "Running"},
                              "error": None}


def test_redelivery_after_an_agent_restart_uses_the_persisted_journal(clock, tmp_path,
                                                                     make_agent):
    journal_path = tmp_path / "host.journal.json"
    sim_path = tmp_path / "host.simulator.json"
    agent, transport = make_agent(clock, SimulatorDriver(state_path=sim_path),
                                  journal=CommandJournal(journal_path))
    agent.step()
    transport.push("vm.create", VM_ARGS, command_id="c-1")
    agent.step()

    # A new process: new driver (same simulated hypervisor), new journal from the same file.
    driver = SimulatorDriver(state_path=sim_path)
    driver.fail_command("vm.create")  # acting again would fail: the journal must answer
    agent, transport = make_agent(clock, driver, journal=CommandJournal(journal_path))
    agent.step()
    assert transport.reports[0]["vms"] == [{"uuid": VM_UUID, "state": "Running"}]
    transport.push("vm.create", VM_ARGS, command_id="c-1")
    agent.step()
    assert transport.results == [{"id": "c-1", "ok": True, "result": {"state": "Running"},
                                  "error": None}]
    assert "vm.create" not in driver.command_counts


def test_backoff_on_transport_errors_then_full_resync(clock, make_agent):
    agent, transport = make_agent(clock)
    agent.step()
    assert len(transport.full_syncs) == 1
    transport.fail_next([TransportError("connection refused")] * 8)
    for _ in range(8):
        agent.step()
    delays = clock.sleeps[-8:]
    assert delays[0] == pytest.approx(0.5, rel=0.25)
    assert all(b > a for a, b in zip(delays[:5], delays[1:6], strict=True))  # growing
    assert max(delays) <= 30.0 and delays[-1] > 20.0
    agent.step()  # the control plane is back: a full sync comes first
    assert len(transport.full_syncs) == 2
    assert transport.reports[-1]["facts"] is not None
    assert agent.backoff.failures == 0
    transport.fail_next([TransportError("again")])
    agent.step()
    assert clock.sleeps[-1] == pytest.approx(0.5, rel=0.25)  # back to the first delay


def test_results_survive_a_failed_report_and_go_with_the_resync(clock, make_agent):
    agent, transport = make_agent(clock)
    agent.step()
    command_id = transport.push("ping")
    real_send = transport.send_report  # the fetch succeeds, the report after it fails
    calls = {"n": 0}

    def failing_once(report):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransportError("reset by peer")
        return real_send(report)

    transport.send_report = failing_once
    agent.step()
    assert [r["id"] for r in agent.outbox] == [command_id]
    agent.step()
    resync = transport.reports[-1]
    assert resync["facts"] is not None
    assert [r["id"] for r in resync["results"]] == [command_id]
    assert agent.outbox == []
    if isinstance(transport, SqsHarness):  # its message goes once its result was reported
        assert transport.in_flight() == 0


def test_rejected_token_is_logged_and_retried_slowly_without_crashing(clock, caplog,
                                                                     make_agent):
    agent, transport = make_agent(clock)
    transport.fail_next([RejectedError(403, "bad agent token")] * 2)
    with caplog.at_level(logging.ERROR, logger="hostagent.agent"):
        agent.step()
        agent.step()
    assert clock.sleeps == [agent.rejected_retry_seconds] * 2
    assert agent.rejected_retry_seconds >= 30
    assert "rejected this agent's token" in caplog.text and "HTTP 403" in caplog.text
    agent.step()  # the operator fixed the token
    assert len(transport.full_syncs) == 1


def test_unknown_host_404_is_refused_slowly_too(clock, caplog, make_agent):
    agent, transport = make_agent(clock)
    transport.fail_next([RejectedError(404, "no such host")])
    with caplog.at_level(logging.ERROR, logger="hostagent.agent"):
        agent.step()
    assert clock.sleeps == [agent.rejected_retry_seconds]
    assert "refused this agent (HTTP 404: no such host)" in caplog.text


def test_periodic_sync_follows_the_ping_interval_from_the_control_plane(clock, make_agent,
                                                                      new_transport):
    transport = new_transport(ping_interval=10)
    agent, _ = make_agent(clock, transport=transport)
    assert agent.ping_interval == DEFAULT_PING_INTERVAL
    start = clock.now
    while clock.now < start + 35:
        agent.step()
    sync_times = len(transport.full_syncs)
    assert agent.ping_interval == 10
    assert sync_times == 4  # at 0, 10, 20, 30 s
    assert all(r["vms"] == [] and r["facts"]["hostname"] == "simulator"
               for r in transport.full_syncs)
    assert max(transport.fetch_waits) <= 10  # long polls end in time for the next sync


def test_long_poll_waits_at_most_the_protocol_maximum(clock, make_agent):
    agent, transport = make_agent(clock)
    agent.step()
    assert transport.fetch_waits == [MAX_WAIT_SECONDS]


def test_crash_and_injected_failure_show_up_in_the_next_sync(clock, make_agent, new_transport):
    driver = SimulatorDriver()
    transport = new_transport(ping_interval=5)
    agent, _ = make_agent(clock, driver, transport)
    agent.step()
    transport.push("vm.create", VM_ARGS)
    agent.step()
    assert transport.results[-1]["result"] == {"state": "Running"}
    driver.fail_command("vm.start", times=1)
    driver.crash_vm(VM_UUID)
    syncs_before = len(transport.full_syncs)
    while len(transport.full_syncs) == syncs_before:
        agent.step()
    assert transport.full_syncs[-1]["vms"] == [{"uuid": VM_UUID, "state": "Stopped"}]
    transport.push("vm.start", {"uuid": VM_UUID}, command_id="s-1")
    transport.push("vm.start", {"uuid": VM_UUID}, command_id="s-2")
    agent.step()
    failed, started = transport.results[-2:]
    assert failed["ok"] is False and "injected failure of vm.start" in failed["error"]
    assert started == {"id": "s-2", "ok": True, "result": {"state": "Running"}, "error": None}


def test_unreadable_hypervisor_still_reports_without_facts(clock, caplog, make_agent):
    driver = SimulatorDriver()
    driver.facts = lambda: (_ for _ in ()).throw(RuntimeError("libvirtd gone"))
    agent, transport = make_agent(clock, driver)
    with caplog.at_level(logging.ERROR, logger="hostagent.agent"):
        agent.step()
    assert transport.reports[0] == {"results": [], "facts": None, "vms": None}
    assert "cannot read the hypervisor's state" in caplog.text


def test_run_stops_on_the_stop_event_and_flushes_results(clock, new_transport):
    stop = threading.Event()
    transport = new_transport()
    agent = Agent(SimulatorDriver(), transport, stop=stop, clock=clock, sleep=clock.sleep)
    command_id = transport.push("ping")
    real_fetch = transport.fetch_commands

    def fetch_then_stop(wait):
        commands = real_fetch(wait)
        if len(transport.fetch_waits) == 2:
            stop.set()
        return commands

    transport.fetch_commands = fetch_then_stop
    agent.run()
    assert stop.is_set() and len(transport.fetch_waits) == 2
    assert [r["id"] for r in transport.results] == [command_id]


def test_stop_during_a_batch_leaves_the_rest_unexecuted(clock, make_agent):
    driver = SimulatorDriver()
    agent, transport = make_agent(clock, driver)
    agent.step()
    transport.push("ping", command_id="p-1")
    transport.push("vm.create", VM_ARGS, command_id="c-1")
    real = driver.before_command

    def stop_after_ping(name):
        real(name)
        agent.stop.set()

    driver.before_command = stop_after_ping
    agent.step()
    assert [r["id"] for r in transport.results] == ["p-1"]
    assert VM_UUID not in driver.vms
    if isinstance(transport, SqsHarness):  # the unrun command's message will come back
        assert transport.in_flight() == 1


def test_report_refused_as_malformed_drops_its_results(clock, caplog, make_agent):
    agent, transport = make_agent(clock)
    agent.step()
    transport.push("ping")
    real_send = transport.send_report
    transport.send_report = lambda report: (_ for _ in ()).throw(RejectedError(422, "bad"))
    with caplog.at_level(logging.ERROR, logger="hostagent.agent"):
        agent.step()
    assert agent.outbox == []
    assert "dropping its 1 results" in caplog.text
    transport.send_report = real_send
    agent.step()
    assert transport.reports[-1]["results"] == []
