"""The wire protocol and the HTTP transport (over httpx.MockTransport: no network)."""
from __future__ import annotations

import json

import httpx
import pytest

from hostagent.http_transport import HttpTransport
from hostagent.protocol import (
    MAX_ERROR_CHARS,
    ProtocolError,
    error_result,
    parse_commands,
    parse_ping_interval,
)
from hostagent.transport import RejectedError, TransportError

HOST = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"


def transport_answering(handler) -> tuple[HttpTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return HttpTransport("http://cp.example:8080/", HOST, "s3cret",
                         http=httpx.MockTransport(record)), seen


def test_fetch_long_polls_with_the_agent_token():
    commands = [{"id": "c1", "name": "ping", "args": {}},
                {"id": "c2", "name": "vm.start", "args": {"uuid": "u"}}]
    transport, seen = transport_answering(
        lambda request: httpx.Response(200, json={"commands": commands}))
    assert transport.fetch_commands(17) == commands
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == f"/v1/hosts/{HOST}/agent/commands"
    assert request.url.params["waitSeconds"] == "17"
    assert request.headers["Authorization"] == "Agent s3cret"
    assert request.extensions["timeout"]["read"] > 17  # outlasts the server's wait


def test_report_posts_the_body_and_returns_the_ping_interval():
    transport, seen = transport_answering(lambda request: httpx.Response(
        200, json={"pingInterval": 15}))
    report = {"results": [{"id": "c1", "ok": False, "result": None, "error": "no"}],
              "facts": None, "vms": [{"uuid": "u", "state": "Running"}]}
    assert transport.send_report(report) == 15
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == f"/v1/hosts/{HOST}/agent/reports"
    assert request.headers["Authorization"] == "Agent s3cret"
    assert json.loads(request.content) == report


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refusals_raise_rejected_with_the_status(status):
    transport, _ = transport_answering(lambda request: httpx.Response(
        status, json={"message": "invalid agent token"}))
    with pytest.raises(RejectedError) as caught:
        transport.fetch_commands(20)
    assert caught.value.status == status
    assert caught.value.is_auth is (status in (401, 403))
    assert "invalid agent token" in str(caught.value)


def test_server_errors_network_errors_and_garbage_are_transport_errors():
    transport, _ = transport_answering(lambda request: httpx.Response(503))
    with pytest.raises(TransportError, match="HTTP 503"):
        transport.send_report({"results": [], "facts": None, "vms": None})

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    transport, _ = transport_answering(refuse)
    with pytest.raises(TransportError, match="ConnectError: connection refused"):
        transport.fetch_commands(20)
    transport, _ = transport_answering(lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(TransportError, match="unreadable commands response"):
        transport.fetch_commands(20)


def test_parse_commands_drops_entries_without_ids_and_keeps_bad_ones_for_an_answer():
    commands, problems = parse_commands({"commands": [
        {"id": "a", "name": "ping"},
        {"name": "ping"},
        "junk",
        {"id": "b", "name": "vm.start", "args": ["x"]},
    ]})
    assert commands == [{"id": "a", "name": "ping", "args": {}},
                        {"id": "b", "name": "vm.start", "args": ["x"]}]
    assert len(problems) == 2 and all("without a string id" in p for p in problems)
    with pytest.raises(ProtocolError):
        parse_commands({"cmds": []})


@pytest.mark.parametrize(("body", "expected"), [
    ({"pingInterval": 30}, 30), ({"pingInterval": 0.4}, 1), ({"pingInterval": 0}, None),
    ({"pingInterval": True}, None), ({"pingInterval": "30"}, None), ({}, None), ([], None),
])
def test_ping_interval_parsing(body, expected):
    assert parse_ping_interval(body) == expected


def test_long_errors_are_truncated_to_what_the_control_plane_accepts():
    short = error_result("c", "disk full")
    assert short == {"id": "c", "ok": False, "result": None, "error": "disk full"}
    long = error_result("c", "x" * 10_000)["error"]
    assert len(long) == MAX_ERROR_CHARS and long.endswith("... (truncated)")
