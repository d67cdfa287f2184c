"""A serverless agent's queue credentials: fetched from the control plane, renewed before
they expire, kept while still valid when renewal fails, refetched after a failed call."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hostagent.protocol import ProtocolError, parse_queue_access
from hostagent.queue_access import RENEW_BEFORE_SECONDS, IssuedQueueAccess
from hostagent.transport import TransportError

NOW = 1_800_000_000.0


def grant(serial: int, valid_for: float) -> dict:
    expiration = datetime.fromtimestamp(NOW + valid_for, UTC).isoformat()
    return {"queueUrl": f"https://sqs.example/aerie-host-h{serial}", "region": "eu-west-1",
            "credentials": {"accessKeyId": f"AKIA{serial}", "secretAccessKey": "s",
                            "sessionToken": "t", "expiration": expiration}}


class ControlPlane:
    def __init__(self, valid_for: float = 3600) -> None:
        self.valid_for = valid_for
        self.calls = 0
        self.down = False

    def fetch(self) -> dict:
        if self.down:
            raise TransportError("connection refused")
        self.calls += 1
        return grant(self.calls, self.valid_for)


@pytest.fixture
def clock():
    return {"now": NOW}


def access(control_plane: ControlPlane, clock) -> IssuedQueueAccess:
    return IssuedQueueAccess(control_plane.fetch, make_client=lambda g: g["credentials"],
                             clock=lambda: clock["now"])


def test_the_first_use_fetches_and_later_uses_reuse_the_credentials(clock):
    control_plane = ControlPlane()
    queue = access(control_plane, clock)
    client, url = queue.client()
    assert client["accessKeyId"] == "AKIA1" and url.endswith("aerie-host-h1")
    clock["now"] += 3600 - RENEW_BEFORE_SECONDS - 1
    assert queue.client()[0]["accessKeyId"] == "AKIA1"
    assert control_plane.calls == 1


def test_credentials_are_renewed_before_they_expire(clock):
    control_plane = ControlPlane()
    queue = access(control_plane, clock)
    queue.client()
    clock["now"] += 3600 - RENEW_BEFORE_SECONDS
    assert queue.client()[0]["accessKeyId"] == "AKIA2"


def test_a_failed_renewal_keeps_valid_credentials_and_an_expired_one_raises(clock):
    control_plane = ControlPlane()
    queue = access(control_plane, clock)
    queue.client()
    control_plane.down = True
    clock["now"] += 3600 - 10  # due for renewal, still valid for 10 s
    assert queue.client()[0]["accessKeyId"] == "AKIA1"
    clock["now"] += 10
    with pytest.raises(TransportError):
        queue.client()
    control_plane.down = False
    assert queue.client()[0]["accessKeyId"] == "AKIA2"


def test_after_a_failed_call_the_next_use_asks_again(clock):
    control_plane = ControlPlane()
    queue = access(control_plane, clock)
    queue.client()
    queue.forget()  # e.g. SQS said the token expired or was revoked
    assert queue.client()[0]["accessKeyId"] == "AKIA2"


@pytest.mark.parametrize("body", [
    None, [], {"queueUrl": "u", "region": "r"},
    {"queueUrl": "u", "region": "r", "credentials": {"accessKeyId": "a"}},
    {"queueUrl": "", "region": "r", "credentials": grant(1, 1)["credentials"]},
    {"queueUrl": "u", "region": 3, "credentials": grant(1, 1)["credentials"]},
])
def test_a_malformed_grant_is_a_protocol_error(body):
    with pytest.raises(ProtocolError, match="expected"):
        parse_queue_access(body)
