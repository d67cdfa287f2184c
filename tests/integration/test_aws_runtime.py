"""Serverless mode: the API Lambda puts the job on SQS and the consumer Lambda runs it.
moto stands in for SQS; the handlers are the real ones from app.py."""
from __future__ import annotations

import boto3
import httpx
import pytest
from chalice.test import Client

from chalicelib import runtime
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from tests.support.api import ApiClient
from tests.support.serverless import aws_runtime, deliver, serverless_api


@pytest.fixture
def aws(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # flows: adding a KVM host runs the connect-host state machine
    with aws_runtime(db_url, tmp_path, flows=True) as serverless:
        yield serverless.settings.jobs_queue_url


def test_job_travels_through_sqs_to_the_consumer_lambda(aws):
    import app as chalice_app

    with httpx.Client(transport=httpx.WSGITransport(app=ChaliceWsgiApp(chalice_app.app)),
                      base_url="http://aerie") as http:
        api = ApiClient(http)
        api.login()
        accepted = api.request("POST", "/v1/zones", json={"name": "via-sqs"})
        assert accepted.status_code == 202
        job_uuid = accepted.json()["jobUuid"]
        assert api.get(f"/v1/api-jobs/{job_uuid}").json()["state"] == "Waiting"

        messages = boto3.client("sqs").receive_message(QueueUrl=aws, MaxNumberOfMessages=10)
        bodies = [m["Body"] for m in messages["Messages"]]
        assert len(bodies) == 1
        with Client(chalice_app.app) as lambdas:
            event = lambdas.events.generate_sqs_event(message_bodies=bodies,
                                                      queue_name="aerie-operations.fifo")
            lambdas.lambda_.invoke("run_operations", event)

        job = api.get(f"/v1/api-jobs/{job_uuid}").json()
        assert job["state"] == "Succeeded", job
        assert api.get(f"/v1/zones/{job['result']['uuid']}").json()["inventory"]["name"] == \
            "via-sqs"


def test_a_redelivery_after_the_consumer_died_fails_the_job_as_interrupted(aws):
    import app as chalice_app
    from chalicelib.db.models import ApiJob

    with httpx.Client(transport=httpx.WSGITransport(app=ChaliceWsgiApp(chalice_app.app)),
                      base_url="http://aerie") as http:
        api = ApiClient(http)
        api.login()
        job_uuid = api.request("POST", "/v1/zones", json={"name": "cut-off"}).json()["jobUuid"]
        message = boto3.client("sqs").receive_message(QueueUrl=aws)["Messages"][0]
        # The Lambda that took it died mid-run: the job says Running, the message comes back.
        with runtime.current().db.session() as db:
            db.get(ApiJob, job_uuid).state = "Running"
        deliver(chalice_app, [message["Body"]])
        job = api.get(f"/v1/api-jobs/{job_uuid}").json()
        assert job["state"] == "Failed" and job["error"]["code"] == "Interrupted"
        # A further duplicate delivery changes nothing.
        deliver(chalice_app, [message["Body"]])
        assert api.get(f"/v1/api-jobs/{job_uuid}").json()["finishedAt"] == job["finishedAt"]


def test_a_level_n_signature_spreads_over_n_message_groups(aws):
    from chalicelib.ops.sqs import SqsFifoQueue

    sqs = boto3.client("sqs")
    queue = SqsFifoQueue(sqs, aws)
    for n in range(40):
        queue.submit(f"op-{n}", "host:h1", 4)
    queue.submit("op-0", "host:h1", 4)  # a re-send within the dedup window is dropped
    groups = set()
    seen = 0
    while batch := sqs.receive_message(QueueUrl=aws, MaxNumberOfMessages=10,
                                       AttributeNames=["MessageGroupId"]).get("Messages"):
        for message in batch:
            groups.add(message["Attributes"]["MessageGroupId"])
            seen += 1
            sqs.delete_message(QueueUrl=aws, ReceiptHandle=message["ReceiptHandle"])
    assert groups == {f"host:h1#{k}" for k in range(4)}
    assert seen == 40


@pytest.fixture
def serverless(aws):
    import app as chalice_app

    with serverless_api(chalice_app, aws) as api:
        yield api


def test_a_serverless_agent_gets_commands_on_its_queue_and_reports_through_the_api(serverless):
    """AddKvmHost's `connect` travels: job consumer → the host's SQS queue → the agent's SQS
    transport (with the credentials the control plane issued it) → the simulator → a report
    through the same Chalice app → host Connected."""
    from hostagent.agent import Agent
    from hostagent.drivers.simulator import SimulatorDriver
    from hostagent.http_transport import HttpTransport
    from hostagent.main import sqs_transport

    (host,) = serverless.add_hosts(1)
    reports = HttpTransport("http://aerie", host["uuid"], host["agentToken"],
                            http=httpx.WSGITransport(app=ChaliceWsgiApp(serverless.app.app)))
    agent = Agent(SimulatorDriver(), sqs_transport(reports))
    commands = agent.transport.fetch_commands(0)
    assert [c["name"] for c in commands] == ["connect"]
    agent.execute(commands)
    agent.sync()  # reports the result, with facts and VMs
    inventory = serverless.api.get(f"/v1/hosts/{host['uuid']}").json()["inventory"]
    assert inventory["status"] == "Connected"
    queue_url = runtime.current().agents.queue_url(host["uuid"])
    assert serverless.sqs.receive_message(QueueUrl=queue_url).get("Messages") is None


def _session_policy(access_key_id: str):
    """The session policy STS (moto) recorded for these credentials, and the session."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sts.models import sts_backends

    (session,) = [role for role in sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles
                  if role.access_key_id == access_key_id]
    return session


def test_an_agent_is_issued_credentials_for_its_own_queue_and_nothing_else(serverless):
    from moto.iam.access_control import IAMPolicy, PermissionResult

    mine, other = serverless.add_hosts(2)
    reply = serverless.api.request(
        "GET", f"/v1/hosts/{mine['uuid']}/agent/queue", token="",
        headers={"Authorization": f"Agent {mine['agentToken']}"})
    assert reply.status_code == 200, reply.text
    grant = reply.json()
    channel = runtime.current().agents
    assert grant["queueUrl"] == channel.queue_url(mine["uuid"])

    session = _session_policy(grant["credentials"]["accessKeyId"])
    assert session.role_arn.endswith(":role/aerie-agent")
    assert mine["uuid"] in session.session_name  # CloudTrail names the host

    def arn(host: dict) -> str:
        return serverless.sqs.get_queue_attributes(
            QueueUrl=channel.queue_url(host["uuid"]),
            AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    policy = IAMPolicy(session.policy)
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert policy.is_action_permitted(action, arn(mine)) == PermissionResult.PERMITTED
        assert policy.is_action_permitted(action, arn(other)) != PermissionResult.PERMITTED
    for action in ("sqs:SendMessage", "sqs:PurgeQueue", "sqs:DeleteQueue", "sqs:CreateQueue",
                   "sqs:SetQueueAttributes"):
        assert policy.is_action_permitted(action, arn(mine)) != PermissionResult.PERMITTED
    assert policy.is_action_permitted("sts:AssumeRole", "*") != PermissionResult.PERMITTED

    # Another host's token gets nothing for this host.
    stolen = serverless.api.request(
        "GET", f"/v1/hosts/{mine['uuid']}/agent/queue", token="",
        headers={"Authorization": f"Agent {other['agentToken']}"})
    assert stolen.status_code == 403


def test_without_an_agent_role_no_credentials_are_issued(aws):
    from chalicelib.errors import Conflict
    from chalicelib.runtime.aws import SqsAgentChannel

    channel = SqsAgentChannel(runtime.current().db, boto3.client("sqs"), "aerie-host-",
                              boto3.client("sts"), agent_role_arn=None)
    with pytest.raises(Conflict, match="AERIE_AGENT_ROLE_ARN") as refused:
        channel.queue_access("h1")
    assert refused.value.code == "AgentRoleMissing"
