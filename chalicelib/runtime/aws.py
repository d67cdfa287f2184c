"""The serverless runtime: the API Lambda puts each job on an SQS FIFO queue (message group
from its signature); the consumer Lambda in app.py runs it while holding the group."""
from __future__ import annotations

import json

import boto3
from sqlalchemy import select

from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand
from chalicelib.ops.sqs import SqsFifoQueue
from chalicelib.settings import Settings


class SqsJobRunner:
    def __init__(self, queue_url: str) -> None:
        self.queue = SqsFifoQueue(boto3.client("sqs"), queue_url)

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        self.queue.submit(job_uuid, signature, level)


class SqsAgentChannel:
    """Commands reach serverless agents on one SQS queue per host (``<prefix><host uuid>``,
    made on first use); each agent's credentials can then be scoped to its own queue."""

    BATCH = 500

    def __init__(self, db: Database, sqs_client, prefix: str) -> None:
        self._db = db
        self._sqs = sqs_client
        self._prefix = prefix
        self._queue_urls: dict[str, str] = {}

    def queue_url(self, host_uuid: str) -> str:
        if host_uuid not in self._queue_urls:
            self._queue_urls[host_uuid] = self._sqs.create_queue(
                QueueName=f"{self._prefix}{host_uuid}")["QueueUrl"]
        return self._queue_urls[host_uuid]

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
        self.agents = SqsAgentChannel(self.db, boto3.client("sqs"),
                                      settings.agent_queue_prefix)
