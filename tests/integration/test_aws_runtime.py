"""Serverless mode: the API Lambda puts the job on SQS and the consumer Lambda runs it.
moto stands in for SQS; the handlers are the real ones from app.py."""
from __future__ import annotations

import boto3
import httpx
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import runtime
from chalicelib.runtime.aws import AwsRuntime
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from chalicelib.settings import Settings
from tests.support.api import ApiClient


@pytest.fixture
def aws(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        queue_url = boto3.client("sqs").create_queue(
            QueueName="aerie-operations.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        settings = Settings.from_env({"AERIE_DB_URL": db_url, "AERIE_RUNTIME": "aws",
                                      "AERIE_JOBS_QUEUE_URL": queue_url,
                                      "AERIE_VAR_DIR": str(tmp_path)})
        serverless = AwsRuntime(settings)
        runtime.install(serverless)
        yield queue_url
        runtime.install(None)
        serverless.db.dispose()


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


def _deliver(chalice_app, bodies):
    with Client(chalice_app.app) as lambdas:
        event = lambdas.events.generate_sqs_event(message_bodies=bodies,
                                                  queue_name="aerie-operations.fifo")
        lambdas.lambda_.invoke("run_operations", event)


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
        _deliver(chalice_app, [message["Body"]])
        job = api.get(f"/v1/api-jobs/{job_uuid}").json()
        assert job["state"] == "Failed" and job["error"]["code"] == "Interrupted"
        # A further duplicate delivery changes nothing.
        _deliver(chalice_app, [message["Body"]])
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


def test_a_serverless_agent_gets_commands_on_its_queue_and_reports_through_the_api(aws):
    """AddKvmHost's `connect` travels: job consumer → the host's SQS queue → the agent's SQS
    transport → the simulator → a report through the same Chalice app → host Connected."""
    import app as chalice_app
    from hostagent.agent import Agent
    from hostagent.drivers.simulator import SimulatorDriver
    from hostagent.http_transport import HttpTransport
    from hostagent.sqs_transport import SqsTransport

    wsgi = ChaliceWsgiApp(chalice_app.app)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://aerie") as http:
        api = ApiClient(http)
        api.login()
        sqs = boto3.client("sqs")

        def run_queued_jobs() -> None:
            while batch := sqs.receive_message(QueueUrl=aws).get("Messages"):
                _deliver(chalice_app, [m["Body"] for m in batch])
                for message in batch:
                    sqs.delete_message(QueueUrl=aws, ReceiptHandle=message["ReceiptHandle"])

        api.request("POST", "/v1/zones", json={"name": "z"})
        run_queued_jobs()
        zone = api.get("/v1/zones").json()["inventories"][0]["uuid"]
        api.request("POST", "/v1/clusters", json={"zoneUuid": zone, "name": "c"})
        run_queued_jobs()
        cluster = api.get("/v1/clusters").json()["inventories"][0]["uuid"]
        accepted = api.request("POST", "/v1/hosts/kvm", json={
            "clusterUuid": cluster, "name": "kvm-1", "managementIp": "10.0.0.5",
            "deployAgent": False}).json()
        run_queued_jobs()
        host = api.get(f"/v1/api-jobs/{accepted['jobUuid']}").json()["result"]

        queue_url = runtime.current().agents.queue_url(host["uuid"])
        reports = HttpTransport("http://aerie", host["uuid"], host["agentToken"],
                                http=httpx.WSGITransport(app=wsgi))
        agent = Agent(SimulatorDriver(), SqsTransport(sqs, queue_url, reports,
                                                      max_wait_seconds=0))
        commands = agent.transport.fetch_commands(0)
        assert [c["name"] for c in commands] == ["connect"]
        agent.execute(commands)
        agent.sync()  # reports the result, with facts and VMs
        inventory = api.get(f"/v1/hosts/{host['uuid']}").json()["inventory"]
        assert inventory["status"] == "Connected"
        assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None
