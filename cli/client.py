"""The HTTP side of the CLI: requests with the session's token, errors as values, jobs polled
until they end. Only HTTP: nothing of the control plane is imported."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from cli.arguments import ApiCall

FINISHED = ("Succeeded", "Failed")


class ApiError(Exception):
    """The server said no: ``{"error": {"code", "message", "details"}}`` and its status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details

    @classmethod
    def from_response(cls, reply: httpx.Response) -> ApiError:
        try:
            error = reply.json().get("error") or {}
        except ValueError:
            error = {}
        if not isinstance(error, dict):
            error = {}
        return cls(reply.status_code, error.get("code") or f"HTTP{reply.status_code}",
                   error.get("message") or reply.text.strip()[:500] or reply.reason_phrase,
                   error.get("details"))


class Unreachable(Exception):
    """No answer from the server at all."""


class AerieClient:
    def __init__(self, url: str, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.url, transport=transport, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, path: str, *, params: list[tuple[str, str]] | None = None,
             body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            reply = self.http.request(method, path, params=params or None, json=body,
                                      headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None
        if reply.status_code >= 400:
            raise ApiError.from_response(reply)
        return reply

    def call(self, call: ApiCall) -> httpx.Response:
        return self.send(call.method, call.path, params=call.params, body=call.body)

    def document(self) -> dict[str, Any]:
        return self.send("GET", "/v1/openapi.json").json()

    def wait_for_job(self, location: str,
                     on_update: Callable[[dict[str, Any]], None] | None = None,
                     *, poll_max: float = 0.5) -> dict[str, Any]:
        """Poll the job until it ends; ``on_update`` sees every state on the way."""
        delay = 0.02
        while True:
            job = self.send("GET", location).json()
            if on_update is not None:
                on_update(job)
            if job.get("state") in FINISHED:
                return job
            time.sleep(delay)
            delay = min(delay * 1.5, poll_max)
