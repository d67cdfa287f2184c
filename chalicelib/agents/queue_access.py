"""Serverless agents read their commands from their host's own SQS queue with credentials the
control plane issues: the agent role's, narrowed by a session policy to that one queue, so a
host that is broken into can neither read another host's commands nor forge its own."""
from __future__ import annotations

from typing import Any

# What an agent does with its queue: receive, delete once reported, extend a long command's
# visibility, read the queue's settings. Sending is the control plane's alone.
AGENT_QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage",
                       "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes")


def queue_policy(queue_arn: str) -> dict[str, Any]:
    """The session policy that limits an agent's credentials to its own queue."""
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "OwnCommandQueueOnly", "Effect": "Allow",
                           "Action": list(AGENT_QUEUE_ACTIONS), "Resource": queue_arn}]}


def session_name(host_uuid: str) -> str:
    """Names the host in CloudTrail: every call the agent makes is traceable to it."""
    return f"aerie-agent-{host_uuid}"[:64]
