"""The serverless runtime: the API Lambda puts each job on an SQS FIFO queue (message group
from its signature); the consumer Lambda in app.py runs it while holding the group."""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError
from sqlalchemy import select

from chalicelib import events
from chalicelib.agents.commands import COMMAND_FINISHED
from chalicelib.agents.queue_access import queue_policy, session_name
from chalicelib.api.jobs import show_progress
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand
from chalicelib.errors import Conflict
from chalicelib.flows.agent_waits import resume_waiting_flows
from chalicelib.flows.outcome import FlowOutcome, FlowProgress, RollbackRecord
from chalicelib.flows.stepfunctions import StepFunctionsFlowRunner
from chalicelib.ops.sqs import SqsFifoQueue
from chalicelib.settings import Settings

log = logging.getLogger(__name__)


class SqsJobRunner:
    # How soon a job's message comes back once its delivery gave its turn up (FlowStillRunning).
    HAND_BACK_SECONDS = 1

    def __init__(self, queue_url: str, sqs_client: Any = None) -> None:
        self._sqs = sqs_client or boto3.client("sqs")
        self._queue_url = queue_url
        self.queue = SqsFifoQueue(self._sqs, queue_url)

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        self.queue.submit(job_uuid, signature, level)

    def hand_back(self, receipt_handle: str) -> None:
        """Make a delivered message visible again soon: the consumer gives its turn up while
        the job's flow goes on, and the next delivery should wait for it now, not after the
        queue's visibility timeout (which must exceed the Lambda's whole timeout). Best
        effort: if it fails, the message still comes back after that timeout."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle,
                VisibilityTimeout=self.HAND_BACK_SECONDS)
        except ClientError as exc:
            log.warning("could not hand a job's message back early (%s); it comes back "
                        "after the queue's visibility timeout", exc)


AGENT_COMMAND_VISIBILITY_SECONDS = 900


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
            # FIFO: a host runs its commands in the order they were sent (a rollback's
            # vm.destroy before its volumes.delete); the command's id deduplicates a resend.
            self._queue_urls[host_uuid] = self._sqs.create_queue(
                QueueName=f"{self._prefix}{host_uuid}.fifo",
                Attributes={"FifoQueue": "true",
                            # longer than any agent step waits: a slow command is not
                            # handed out again while it still runs
                            "VisibilityTimeout": str(AGENT_COMMAND_VISIBILITY_SECONDS)})["QueueUrl"]
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
                                            "args": json.loads(command.args)}),
                    MessageGroupId=command.host_uuid, MessageDeduplicationId=command.uuid)
                command.state, command.sent_date = "Sent", utcnow()
        return len(pending)


class StepFunctionsFlowEngine:
    """Each flow is a Step Functions execution named by its job; the consumer Lambda waits
    for it until ``wait_seconds`` and then gives its turn up (the job's message comes back
    and the next delivery waits again), so a flow may outlast any one Lambda."""

    def __init__(self, db: Database, stepfunctions: Any, state_machine_prefix: str,
                 wait_seconds: float, poll_seconds: float = 1.0) -> None:
        self._db = db
        self._runner = StepFunctionsFlowRunner(stepfunctions, state_machine_prefix,
                                               poll_seconds)
        self._sfn = stepfunctions
        self._wait_seconds = wait_seconds

    def run(self, chain: str, job_uuid: str, context: dict[str, Any]) -> FlowOutcome | None:
        return self._runner.run(chain, job_uuid, context, self._progress(job_uuid),
                                deadline=time.monotonic() + self._wait_seconds)

    def still_running(self, chain: str, job_uuid: str) -> bool:
        try:
            self._sfn.describe_execution(
                executionArn=self._runner.execution_arn(chain, job_uuid))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return False
            raise
        return True  # running or ended: either way its outcome is waited for, not guessed

    def roll_back(self, chain: str, job_uuid: str,
                  context: dict[str, Any]) -> tuple[RollbackRecord, ...]:
        # Asked only when no execution exists (still_running is False): no step ran.
        return ()

    def _progress(self, job_uuid: str):
        def show(progress: FlowProgress) -> None:
            with self._db.session() as session:
                show_progress(session, {job_uuid: progress.to_view()})
        return show


def resume_flows_on_reports(db: Database, stepfunctions: Any):
    """A subscriber to COMMAND_FINISHED: a committed agent report resumes the flow task
    waiting on it."""
    def on_event(_name: str, payload: dict[str, Any]) -> None:
        with db.session() as session:
            command = session.get(AgentCommand, payload["commandUuid"])
            if command is not None:
                resume_waiting_flows(stepfunctions, [command])
    return on_event


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
        stepfunctions = boto3.client("stepfunctions")
        self.flows = StepFunctionsFlowEngine(self.db, stepfunctions,
                                             settings.flow_state_machine_prefix,
                                             settings.flow_wait_seconds)
        self._unsubscribe = events.subscribe(resume_flows_on_reports(self.db, stepfunctions),
                                             (COMMAND_FINISHED,))

    def close(self) -> None:
        self._unsubscribe()
        self.db.dispose()
