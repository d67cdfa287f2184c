"""The HTTP transport: long-poll for commands, POST reports (see ``hostagent.protocol``)."""
from __future__ import annotations

import logging

import httpx

from hostagent.protocol import (
    WAIT_SECONDS_PARAM,
    Command,
    ProtocolError,
    QueueAccessGrant,
    Report,
    authorization,
    commands_path,
    parse_commands,
    parse_ping_interval,
    parse_queue_access,
    queue_path,
    reports_path,
)
from hostagent.transport import RejectedError, TransportError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0  # beyond a long poll's own wait


class HttpTransport:
    def __init__(self, url: str, host_uuid: str, token: str,
                 http: httpx.BaseTransport | None = None) -> None:
        """``http`` replaces the network (tests pass an ``httpx.MockTransport``)."""
        self.host_uuid = host_uuid
        self._client = httpx.Client(
            base_url=url.rstrip("/"), transport=http,
            headers={"Authorization": authorization(token), "User-Agent": "aerie-agent"},
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT))

    def fetch_commands(self, wait_seconds: int) -> list[Command]:
        response = self._request(
            "GET", commands_path(self.host_uuid), params={WAIT_SECONDS_PARAM: wait_seconds},
            timeout=httpx.Timeout(REQUEST_TIMEOUT + wait_seconds, connect=CONNECT_TIMEOUT))
        try:
            commands, problems = parse_commands(response.json())
        except (ValueError, ProtocolError) as exc:
            raise TransportError(f"unreadable commands response: {exc}") from exc
        for problem in problems:
            log.error("control plane sent a bad command: %s", problem)
        return commands

    def send_report(self, report: Report) -> int | None:
        response = self._request("POST", reports_path(self.host_uuid), json=report)
        try:
            return parse_ping_interval(response.json())
        except ValueError:
            return None

    def fetch_queue_access(self) -> QueueAccessGrant:
        """The host's command queue and fresh credentials for it (serverless)."""
        response = self._request("GET", queue_path(self.host_uuid))
        try:
            return parse_queue_access(response.json())
        except (ValueError, ProtocolError) as exc:
            raise TransportError(f"unreadable queue access response: {exc}") from exc

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, *, params: dict[str, int] | None = None,
                 json: Report | None = None,
                 timeout: httpx.Timeout | None = None) -> httpx.Response:
        try:
            response = self._client.request(
                method, path, params=params, json=json,
                timeout=timeout if timeout is not None else self._client.timeout)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise TransportError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RejectedError(response.status_code, _detail(response))
        return response

def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:300] or response.reason_phrase
