"""The agent with its serverless transport: commands from the host's SQS queue (moto),
reports to the control plane; a redelivered command is answered, not run again."""
from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from moto import mock_aws

from hostagent.agent import Agent
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.memory_transport import MemoryTransport
from hostagent.queue_access import FixedQueueAccess
from hostagent.sqs_transport import SqsTransport
from hostagent.transport import TransportError


@pytest.fixture
def queue(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="aerie-host-h1",
                               Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
        yield sqs, url


def send(sqs, url: str, command_id: str, name: str, args: dict | None = None) -> None:
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"id": command_id, "name": name, "args": args or {}}))


def run_until(agent: Agent, done, timeout: float = 10) -> None:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "the agent did not get there in time"
            time.sleep(0.05)
    finally:
        agent.stop.set()
        thread.join(timeout=10)


def test_commands_from_the_queue_run_and_their_messages_go_once_reported(queue):
    sqs, url = queue
    control_plane = MemoryTransport(ping_interval=60)
    driver = SimulatorDriver()
    agent = Agent(driver, SqsTransport(FixedQueueAccess(sqs, url), control_plane,
                                           max_wait_seconds=1))
    send(sqs, url, "c1", "vm.create", {"uuid": "a" * 32, "name": "vm", "cpuNum": 1,
                                       "memorySize": 2**30})
    send(sqs, url, "c2", "ping")
    run_until(agent, lambda: {"c1", "c2"} <= {r["id"] for r in control_plane.results})
    assert [vm["uuid"] for vm in driver.list_vms()] == ["a" * 32]
    time.sleep(1.2)  # past the visibility timeout: nothing comes back, all were deleted
    assert sqs.receive_message(QueueUrl=url).get("Messages") is None


def test_a_command_redelivered_after_a_lost_report_is_not_run_twice(queue):
    sqs, url = queue
    driver = SimulatorDriver()
    created = []
    original = driver.create_vm
    driver.create_vm = lambda spec, start=True: (created.append(spec.uuid),
                                                 original(spec, start))[1]
    control_plane = MemoryTransport(ping_interval=60)
    agent = Agent(driver, SqsTransport(FixedQueueAccess(sqs, url), control_plane,
                                           max_wait_seconds=1))
    send(sqs, url, "c1", "vm.create", {"uuid": "b" * 32, "name": "vm", "cpuNum": 1,
                                       "memorySize": 2**30})
    # The first report fails (the network drops it): the message is not deleted, comes back
    # after the visibility timeout, and the journal answers it.
    control_plane.fail_next([TransportError("cut")])
    run_until(agent, lambda: any(r["id"] == "c1" for r in control_plane.results), timeout=15)
    assert created == ["b" * 32]
