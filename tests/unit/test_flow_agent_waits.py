"""Agent steps through the real ``agent_commands`` table: the embedded runner waits for the
report by reading it; on AWS the report resumes the execution's waiting task."""
from __future__ import annotations

import json
import threading
import time
import uuid

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import select

from chalicelib.agents import commands
from chalicelib.agents.protocol import CommandResult
from chalicelib.db.database import Database
from chalicelib.db.models import Account, AgentCommand, Cluster, Host, Zone
from chalicelib.flows.agent_waits import (
    TASK_TOKEN_ARG,
    DatabaseAgentDispatch,
    PollingAgentWaiter,
    resume_waiting_flows,
)
from chalicelib.flows.asl import compile_chain, render, with_function_arn
from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.invocation import handle_step_event
from chalicelib.flows.local import AgentOutcome, LocalFlowRunner
from chalicelib.flows.stepfunctions import StepFunctionsFlowRunner
from chalicelib.flows.steps import AgentCommandRequest, StepEnv, StepRegistry, agent_step

CHAIN = Chain("boot", (ChainStep("vm.boot", 5),))


@pytest.fixture
def database(db_url):
    db = Database(db_url)
    with db.session() as session:
        account = session.scalar(select(Account.uuid).where(Account.name == "admin"))
        zone = Zone(name=f"zone-{uuid.uuid4().hex[:6]}", account_uuid=account)
        session.add(zone)
        session.flush()
        cluster = Cluster(name="cluster", zone_uuid=zone.uuid, account_uuid=account)
        session.add(cluster)
        session.flush()
        session.add(Host(uuid="a" * 32, name="kvm-1", zone_uuid=zone.uuid,
                         cluster_uuid=cluster.uuid, management_ip="10.0.0.5",
                         account_uuid=account))
    yield db
    db.dispose()


def boot_registry() -> StepRegistry:
    registry = StepRegistry()

    @agent_step("vm.boot", registry=registry)
    class Boot:
        def command(self, ctx, env: StepEnv) -> AgentCommandRequest:
            return AgentCommandRequest("a" * 32, "vm.start", {"uuid": ctx["vmUuid"]})

        def rollback(self, ctx, env: StepEnv) -> None:
            return None

    return registry


def report(db: Database, ok: bool, result=None, error=None) -> list[commands.FinishedCommand]:
    """What the report route does with an agent's results; returns the finished commands."""
    while True:
        with db.session() as session:
            pending = session.scalars(select(AgentCommand)).all()
            if pending:
                return commands.record(session, "a" * 32, [CommandResult(
                    id=pending[0].uuid, ok=ok, result=result, error=error)])
        time.sleep(0.01)


class CountingChannel:
    delivered = 0

    def deliver_pending(self) -> int:
        self.delivered += 1
        return 0


def test_an_agent_steps_command_is_queued_for_its_host_with_the_task_token(database):
    channel = CountingChannel()
    dispatch = DatabaseAgentDispatch(database, channel)
    command_uuid = dispatch.send(AgentCommandRequest("a" * 32, "vm.start", {"uuid": "v"}),
                                 task_token="token-1")
    with database.session() as session:
        command = session.get(AgentCommand, command_uuid)
        assert (command.name, command.state) == ("vm.start", "Pending")
        assert json.loads(command.args) == {"uuid": "v", TASK_TOKEN_ARG: "token-1"}
    assert channel.delivered == 1  # handed on at once (serverless: the host's SQS queue)


def test_the_embedded_runner_waits_for_the_report_in_the_table(database):
    env = StepEnv(session=database.session, agents=DatabaseAgentDispatch(database))
    runner = LocalFlowRunner(env, PollingAgentWaiter(database, 0.01), boot_registry())
    reporter = threading.Thread(target=report, args=(database, True, {"state": "Running"}))
    reporter.start()
    outcome = runner.run(CHAIN, {"vmUuid": "vm-1"})
    reporter.join()
    assert outcome.succeeded
    assert outcome.context["agentResults"] == {"vm_boot": {"state": "Running"}}


def test_the_polling_waiter_gives_up_at_the_timeout(database):
    now = [0.0]
    waiter = PollingAgentWaiter(database, 1.0, clock=lambda: now[0],
                                sleep=lambda s: now.__setitem__(0, now[0] + s))
    command_uuid = DatabaseAgentDispatch(database).send(
        AgentCommandRequest("a" * 32, "vm.start"))
    assert waiter.wait(command_uuid, 5) is None
    assert now[0] == 5.0
    report(database, False, error="no such domain")
    assert waiter.wait(command_uuid, 5) == AgentOutcome(ok=False, error="no such domain")


@pytest.mark.parametrize(("ok", "expected"), [(True, None), (False, "AgentCommandFailed")])
def test_on_aws_the_agents_report_resumes_the_waiting_execution(database, monkeypatch, ok,
                                                                expected):
    from moto.awslambda_simple.models import LambdaSimpleBackend

    registry = boot_registry()
    env = StepEnv(session=database.session, agents=DatabaseAgentDispatch(database))

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        return json.dumps(handle_step_event(json.loads(body), env, registry)).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                          "lambda": {"use_docker": False}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        sfn.create_state_machine(
            name="aerie-flow-boot", roleArn="arn:aws:iam::123456789012:role/flows",
            definition=with_function_arn(render(compile_chain(CHAIN)),
                                         "arn:aws:lambda:us-east-1:123456789012:function:f"))
        runner = StepFunctionsFlowRunner(
            sfn, "arn:aws:states:us-east-1:123456789012:stateMachine:aerie-flow-", 0.01)
        execution = runner.start("boot", "job-1", {"vmUuid": "vm-1"})
        # a redelivered job finds its execution instead of starting another one
        assert runner.start("boot", "job-1", {"vmUuid": "vm-1"}) == execution
        finished = report(database, ok, {"state": "Running"}, None if ok else "qemu died")
        assert resume_waiting_flows(sfn, finished) == 1
        outcome = runner.wait("boot", execution, deadline=time.monotonic() + 10)
        if ok:  # a repeated report finds no task waiting (moto checks this for success only)
            assert resume_waiting_flows(sfn, finished) == 0
    if ok:
        assert outcome.context["agentResults"] == {"vm_boot": {"state": "Running"}}
    else:
        assert outcome.failure.error == expected
        assert [r.step for r in outcome.rollbacks] == ["vm.boot"]
