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
