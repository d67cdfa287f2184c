"""A test client for the HTTP API, in-process through the same WSGI app `aerie up` serves."""
from __future__ import annotations

import time
from typing import Any

import httpx

ADMIN_PASSWORD = "admin-password-for-tests"


class JobFailed(AssertionError):
    pass


class ApiClient:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.token: str | None = None

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                token: str | None = None, content: bytes | None = None,
                headers: dict | None = None) -> httpx.Response:
        headers = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.http.request(method, path, json=json, params=params, content=content,
                                 headers=headers)

    def login(self, account: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        reply = self.request("PUT", "/v1/accounts/login",
                             json={"accountName": account, "password": password}, token="")
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["inventory"]["token"]
        return self.token

    def wait_job(self, job_uuid: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            job = self.request("GET", f"/v1/api-jobs/{job_uuid}").json()
            if job["state"] in ("Succeeded", "Failed"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_uuid} still {job['state']} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def submit(self, method: str, path: str, body: Any = None, **kwargs) -> dict:
        """Send a mutating call, expect 202, and return the finished job."""
        reply = self.request(method, path, json=body, **kwargs)
        assert reply.status_code == 202, f"{method} {path}: {reply.status_code} {reply.text}"
        return self.wait_job(reply.json()["jobUuid"])

    def do(self, method: str, path: str, body: Any = None, **kwargs) -> Any:
        """A mutating call that must succeed; returns the job's result."""
        job = self.submit(method, path, body, **kwargs)
        if job["state"] != "Succeeded":
            raise JobFailed(f"{method} {path} failed: {job['error']}")
        return job["result"]

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)
