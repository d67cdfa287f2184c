"""The serverless control plane under moto: the aws runtime installed, the real Chalice app
behind WSGI (API Gateway), and a job pump standing in for the consumer Lambda's SQS event
source; optionally Step Functions executing the compiled flows with the real step Lambda,
and simulated hosts whose agents read their commands from their SQS queues."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import runtime
from chalicelib.runtime.aws import AwsRuntime, StepFunctionsFlowEngine
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from chalicelib.settings import Settings
from tests.support.api import ApiClient
from tests.support.stepfunctions import (
    EXECUTING,
    MACHINE_PREFIX,
    checked_in_definitions,
    create_state_machines,
    run_step_lambda_in_process,
)

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS_QUEUE = "aerie-operations.fifo"
AGENT_ROLE_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "sts:AssumeRole"}]}
FINISHED = ("Succeeded", "Failed")


@contextmanager
def aws_runtime(db_url: str, var_dir: Path, *, flows: bool = False,
                flow_wait_seconds: float = 45.0, flow_poll_seconds: float = 0.05,
                visibility_timeout: int = 30) -> Iterator[AwsRuntime]:
    """Inside moto: the operations FIFO queue, the agent role, and the aws runtime installed
    as the process's; with ``flows``, a state machine per checked-in chain whose Lambda tasks
    run ``app.flow_step`` in-process."""
    import app as app_module

    with mock_aws(config=EXECUTING), pytest.MonkeyPatch.context() as mp:
        queue_url = boto3.client("sqs").create_queue(
            QueueName=OPERATIONS_QUEUE,
            Attributes={"FifoQueue": "true",
                        "VisibilityTimeout": str(visibility_timeout)})["QueueUrl"]
        role_arn = boto3.client("iam").create_role(
            RoleName="aerie-agent", AssumeRolePolicyDocument=json.dumps(AGENT_ROLE_TRUST),
        )["Role"]["Arn"]
        env = {"AERIE_DB_URL": db_url, "AERIE_RUNTIME": "aws",
               "AERIE_JOBS_QUEUE_URL": queue_url, "AERIE_AGENT_ROLE_ARN": role_arn,
               "AERIE_VAR_DIR": str(var_dir),
               "AERIE_FLOW_WAIT_SECONDS": str(flow_wait_seconds)}
        if flows:
            env["AERIE_FLOW_STATE_MACHINE_PREFIX"] = MACHINE_PREFIX
            run_step_lambda_in_process(mp, app_module)
            create_state_machines(boto3.client("stepfunctions"),
                                  checked_in_definitions(ROOT / "statemachines"))
        serverless = AwsRuntime(Settings.from_env(env))
        # Production polls the execution every second; the tests' flows end in milliseconds.
        serverless.flows = StepFunctionsFlowEngine(
            serverless.db, boto3.client("stepfunctions"), MACHINE_PREFIX if flows else "",
            flow_wait_seconds, poll_seconds=flow_poll_seconds)
        runtime.install(serverless)
        try:
            yield serverless
        finally:
            runtime.install(None)
            serverless.close()


def deliver(app_module, bodies: list[str]) -> None:
    """The consumer Lambda, given an event chalice's test client makes from ``bodies``."""
    with Client(app_module.app) as lambdas:
        event = lambdas.events.generate_sqs_event(message_bodies=bodies,
                                                  queue_name=OPERATIONS_QUEUE)
        lambdas.lambda_.invoke("run_operations", event)


def sqs_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda's SQS event source gives the consumer for these received messages."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {},
        "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3]} for m in messages]}


class Serverless:
    """The app as API Gateway and the consumer Lambda would run it, with a job pump that
    behaves like Lambda's SQS event source (batch size 1): a message is deleted when the
    handler returns, and left in flight (to come back) when it raises."""

    def __init__(self, http: httpx.Client, jobs_queue: str) -> None:
        import app as chalice_app

        self.app = chalice_app
        self.api = ApiClient(http)
        self.api.login()
        self.sqs = boto3.client("sqs")
        self.jobs_queue = jobs_queue
        self.queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=jobs_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.given_up: list[tuple[str, BaseException]] = []  # deliveries that raised

    def deliver_next(self, wait_seconds: int = 1) -> bool:
        """Receive one message and hand it to the consumer; False if none came."""
        messages = self.sqs.receive_message(
            QueueUrl=self.jobs_queue, MaxNumberOfMessages=1, WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"]).get("Messages", [])
        if not messages:
            return False
        with Client(self.app.app) as lambdas:
            try:
                lambdas.lambda_.invoke("run_operations", sqs_event(self.queue_arn, messages))
            except Exception as exc:  # noqa: BLE001 - Lambda's event source keeps the message
                self.given_up.append((messages[0]["Body"], exc))
                return True
        self.sqs.delete_message(QueueUrl=self.jobs_queue,
                                ReceiptHandle=messages[0]["ReceiptHandle"])
        return True

    def job(self, job_uuid: str) -> dict:
        return self.api.get(f"/v1/api-jobs/{job_uuid}").json()

    def wait_job(self, job_uuid: str, timeout: float = 20) -> dict:
        """Pump deliveries until the job ends."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_uuid))["state"] not in FINISHED:
            assert time.monotonic() < deadline, f"job {job_uuid} still {job['state']}"
            self.deliver_next()
        return job

    def submit(self, method: str, path: str, body: Any = None) -> dict:
        reply = self.api.request(method, path, json=body)
        assert reply.status_code == 202, f"{method} {path}: {reply.status_code} {reply.text}"
        return self.wait_job(reply.json()["jobUuid"])

    def do(self, method: str, path: str, body: Any = None) -> Any:
        job = self.submit(method, path, body)
        assert job["state"] == "Succeeded", job
        return job["result"]

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.api.get(path, **kwargs)

    def add_hosts(self, count: int) -> list[dict]:
        zone = self.do("POST", "/v1/zones", {"name": "z"})["uuid"]
        cluster = self.do("POST", "/v1/clusters", {"zoneUuid": zone, "name": "c"})["uuid"]
        return [self.do("POST", "/v1/hosts/kvm", {
            "clusterUuid": cluster, "name": f"kvm-{n}", "managementIp": f"10.0.0.{n + 5}",
            "deployAgent": False}) for n in range(count)]


@contextmanager
def serverless_api(app_module, jobs_queue: str) -> Iterator[Serverless]:
    wsgi = ChaliceWsgiApp(app_module.app)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://aerie") as http:
        yield Serverless(http, jobs_queue)


class AgentThread:
    """A host agent (``hostagent.agent.Agent``) stepped on a thread of its own until stopped;
    ``pause`` holds it between steps (a host that is slow to answer)."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.failure: BaseException | None = None
        self._running = threading.Event()
        self._running.set()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"agent-{id(agent):x}")

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._idle.clear()
        self._running.clear()
        assert self._idle.wait(10), "the agent did not finish its step"

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.agent.stop.set()
        self._running.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the agent thread did not stop"
        if self.failure is not None:
            raise self.failure

    def _loop(self) -> None:
        try:
            while not self.agent.stop.is_set():
                if not self._running.is_set():
                    self._idle.set()
                    self._running.wait()
                    continue
                self.agent.step()
        except BaseException as exc:  # noqa: BLE001 - handed to the test in stop()
            self.failure = exc
        finally:
            self._idle.set()
