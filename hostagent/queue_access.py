"""How a serverless agent reaches its host's command queue: an SQS client and the queue's URL.

``IssuedQueueAccess`` is what ``aerie-agent --sqs`` uses: the control plane issues the queue's
URL and short-lived credentials that can read that queue and nothing else, and the agent asks
again before they expire (or after any failure, in case they were revoked or expired early).
``FixedQueueAccess`` uses a client it is given (tests, and operators who bring their own).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from hostagent.protocol import QueueAccessGrant
from hostagent.transport import RejectedError, TransportError

log = logging.getLogger(__name__)

RENEW_BEFORE_SECONDS = 300  # ask for new credentials this long before the old ones expire


class QueueAccess(Protocol):
    def client(self) -> tuple[Any, str]:
        """An SQS client allowed to read the host's queue, and the queue's URL."""
        ...

    def forget(self) -> None:
        """A call with the current client failed: get a fresh one next time."""
        ...


class FixedQueueAccess:
    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._client, self._url = sqs_client, queue_url

    def client(self) -> tuple[Any, str]:
        return self._client, self._url

    def forget(self) -> None:
        pass


def boto3_sqs_client(grant: QueueAccessGrant) -> Any:
    import boto3

    credentials = grant["credentials"]
    return boto3.client("sqs", region_name=grant["region"],
                        aws_access_key_id=credentials["accessKeyId"],
                        aws_secret_access_key=credentials["secretAccessKey"],
                        aws_session_token=credentials["sessionToken"])


class IssuedQueueAccess:
    def __init__(self, fetch: Callable[[], QueueAccessGrant],
                 make_client: Callable[[QueueAccessGrant], Any] = boto3_sqs_client,
                 clock: Callable[[], float] = time.time) -> None:
        """``fetch`` asks the control plane (``HttpTransport.fetch_queue_access``)."""
        self._fetch = fetch
        self._make_client = make_client
        self._clock = clock
        self._client: Any = None
        self._url = ""
        self._expires_at = 0.0
        self._renew_at = 0.0

    def client(self) -> tuple[Any, str]:
        if self._clock() >= self._renew_at:
            self._renew()
        return self._client, self._url

    def forget(self) -> None:
        self._renew_at = 0.0

    def _renew(self) -> None:
        try:
            grant = self._fetch()
        except (TransportError, RejectedError) as exc:
            if self._client is not None and self._clock() < self._expires_at:
                log.warning("could not renew the queue credentials yet (%s); the current "
                            "ones are still valid", exc)
                return
            raise
        expires_at = datetime.fromisoformat(grant["credentials"]["expiration"]).timestamp()
        self._client, self._url = self._make_client(grant), grant["queueUrl"]
        self._expires_at = expires_at
        self._renew_at = expires_at - RENEW_BEFORE_SECONDS
        log.info("queue credentials for %s valid for %.0f s", self._url,
                 expires_at - self._clock())
