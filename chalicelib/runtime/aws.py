"""The serverless runtime: the API Lambda puts each job on an SQS FIFO queue (message group
from its signature); the consumer Lambda in app.py runs it while holding the group."""
from __future__ import annotations

import json
from typing import Any

import boto3
from sqlalchemy import select

from chalicelib.agents.queue_access import queue_policy, session_name
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand
from chalicelib.errors import Conflict
from chalicelib.ops.sqs import SqsFifoQueue
from chalicelib.settings import Settings


class SqsJobRunner:
    def __init__(self, queue_url: str) -> None:
        self.queue = SqsFifoQueue(boto3.client("sqs"), queue_url)

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        self.queue.submit(job_uuid, signature, level)


class SqsAgentChannel:
    """Commands reach serverless agents on one SQS queue per host (``<prefix><host uuid>``,
    made on first use); each agent reads its own with credentials scoped to it alone."""

    BATCH = 500

    def __init__(self, db: Database, sqs_client, prefix: str, sts_client=None,
                 agent_role_arn: str | None = None, credentials_seconds: int = 3600) -> None:
        self._db = db
        self._sqs = sqs_client
        self._sts = sts_client
        self._prefix = prefix
        self._agent_role_arn = agent_role_arn
        self._credentials_seconds = credentials_seconds
        self._queue_urls: dict[str, str] = {}

    def queue_url(self, host_uuid: str) -> str:
        if host_uuid not in self._queue_urls:
            self._queue_urls[host_uuid] = self._sqs.create_queue(
                QueueName=f"{self._prefix}{host_uuid}")["QueueUrl"]
        return self._queue_urls[host_uuid]

    def queue_access(self, host_uuid: str) -> dict[str, Any]:
        if not self._agent_role_arn or self._sts is None:
            raise Conflict("this control plane has no agent role (AERIE_AGENT_ROLE_ARN), so "
                           "it cannot issue queue credentials to agents; deploy infra/ or "
                           "set it", code="AgentRoleMissing")
        url = self.queue_url(host_uuid)
        arn = self._sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        issued = self._sts.assume_role(
            RoleArn=self._agent_role_arn, RoleSessionName=session_name(host_uuid),
            Policy=json.dumps(queue_policy(arn)),
            DurationSeconds=self._credentials_seconds)["Credentials"]
        return {"queueUrl": url, "region": arn.split(":")[3], "credentials": {
            "accessKeyId": issued["AccessKeyId"], "secretAccessKey": issued["SecretAccessKey"],
            "sessionToken": issued["SessionToken"],
            "expiration": issued["Expiration"].isoformat()}}

    def deliver_pending(self) -> int:
        with self._db.session() as db:
            pending = list(db.scalars(
                select(AgentCommand).where(AgentCommand.state == "Pending")
                .order_by(AgentCommand.create_date).limit(self.BATCH)))
            for command in pending:
                self._sqs.send_message(
                    QueueUrl=self.queue_url(command.host_uuid),
                    MessageBody=json.dumps({"id": command.uuid, "name": command.name,
                                            "args": json.loads(command.args)}))
                command.state, command.sent_date = "Sent", utcnow()
        return len(pending)


class AwsRuntime:
    def __init__(self, settings: Settings) -> None:
        if not settings.jobs_queue_url:
            raise ValueError("the aws runtime needs AERIE_JOBS_QUEUE_URL (an SQS FIFO queue)")
        self.settings = settings
        self.db = Database(settings.db_url)
        self.jobs = SqsJobRunner(settings.jobs_queue_url)
        self.agents = SqsAgentChannel(
            self.db, boto3.client("sqs"), settings.agent_queue_prefix, boto3.client("sts"),
            settings.agent_role_arn, settings.agent_credentials_seconds)
