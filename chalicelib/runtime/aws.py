"""The serverless runtime: the API Lambda enqueues jobs on SQS; a consumer Lambda runs them."""
from __future__ import annotations

import json

import boto3

from chalicelib.db.database import Database
from chalicelib.settings import Settings


class SqsJobRunner:
    def __init__(self, queue_url: str) -> None:
        self._queue_url = queue_url
        self._sqs = boto3.client("sqs")

    def submit(self, job_uuid: str) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url,
                               MessageBody=json.dumps({"jobUuid": job_uuid}))


class AwsRuntime:
    def __init__(self, settings: Settings) -> None:
        if not settings.jobs_queue_url:
            raise ValueError("the aws runtime needs AERIE_JOBS_QUEUE_URL")
        self.settings = settings
        self.db = Database(settings.db_url)
        self.jobs = SqsJobRunner(settings.jobs_queue_url)
