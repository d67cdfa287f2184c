"""The serverless runtime: the API Lambda puts each job on an SQS FIFO queue (message group
from its signature); the consumer Lambda in app.py runs it while holding the group."""
from __future__ import annotations

import boto3

from chalicelib.db.database import Database
from chalicelib.ops.sqs import SqsFifoQueue
from chalicelib.settings import Settings


class SqsJobRunner:
    def __init__(self, queue_url: str) -> None:
        self.queue = SqsFifoQueue(boto3.client("sqs"), queue_url)

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        self.queue.submit(job_uuid, signature, level)


class AwsRuntime:
    def __init__(self, settings: Settings) -> None:
        if not settings.jobs_queue_url:
            raise ValueError("the aws runtime needs AERIE_JOBS_QUEUE_URL (an SQS FIFO queue)")
        self.settings = settings
        self.db = Database(settings.db_url)
        self.jobs = SqsJobRunner(settings.jobs_queue_url)
