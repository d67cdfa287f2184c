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
