"""A real `aerie up` and real `aerie-agent` processes, for the end-to-end agent tests: an API
client that waits for jobs and host statuses, and starting/stopping the processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD

AGENT = str(Path(sys.executable).with_name("aerie-agent"))


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        token = self.http.put("/v1/accounts/login", json={
            "accountName": "admin", "password": ADMIN_PASSWORD}).json()["inventory"]["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def submit(self, method: str, path: str, body: dict | None = None,
               within: float = 20) -> dict:
        """The job of a mutating call once it has ended (Succeeded or Failed)."""
        accepted = self.http.request(method, path, json=body)
        assert accepted.status_code == 202, accepted.text
        job_uuid = accepted.json()["jobUuid"]
        deadline = time.monotonic() + within
        while (job := self.http.get(f"/v1/api-jobs/{job_uuid}").json())["state"] in (
                "Waiting", "Running"):
            assert time.monotonic() < deadline, f"job {job_uuid} not done in {within}s: {job}"
            time.sleep(0.02)
        return job

    def do(self, method: str, path: str, body: dict | None = None) -> dict:
        job = self.submit(method, path, body)
        assert job["state"] == "Succeeded", job
        return job["result"]

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def host(self, uuid: str) -> dict:
        return self.http.get(f"/v1/hosts/{uuid}").json()["inventory"]

    def wait_status(self, uuid: str, status: str, within: float) -> float:
        started = time.monotonic()
        while self.host(uuid)["status"] != status:
            assert time.monotonic() - started < within, f"host not {status} in {within}s"
            time.sleep(0.1)
        return time.monotonic() - started


def start_agent(url: str, host: dict, tmp_path: Path, token: str | None = None, *,
                libvirt_uri: str = "test:///default",
                extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    log = (tmp_path / f"agent-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(
        [AGENT, "--url", url, "--host-uuid", host["uuid"], "--token",
         token or host["agentToken"], "--driver", "libvirt", "--libvirt-uri", libvirt_uri,
         "--state-dir", str(tmp_path / "agent-state"), *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def agent_log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("agent-*.log")))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def control_plane(tmp_path: Path) -> Iterator[Server]:
    """`aerie up` on a fresh SQLite database in ``tmp_path`` (``cp.db``), killed afterwards."""
    server = Server({"AERIE_DB_URL": f"sqlite:///{tmp_path / 'cp.db'}",
                     "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
