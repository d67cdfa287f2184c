"""kill -9 of `aerie up` in the middle of a busy operation queue loses nothing: after a
restart on the same database every accepted job ends, in order, one at a time, and at most
the one that was running is failed as interrupted."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BufferedReader
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD, ApiClient

pytestmark = pytest.mark.slow

BURST = 300  # updates sent back to back, in order, on one connection
BACKLOG = 10  # jobs that must still wait when the process is killed
FINISHED = ("Succeeded", "Failed")


@dataclass
class JobRecord:
    uuid: str
    state: str
    started: datetime | None
    finished: datetime | None
    error: dict[str, Any] | None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _millis(moment: datetime) -> datetime:
    """The wire's resolution: timestamps are cut (not rounded) to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _start(db_url: str, directory: Path) -> Server:
    directory.mkdir()
    return Server({"AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, directory)


def _update(zone_uuid: str, token: str, description: str) -> bytes:
    body = json.dumps({"description": description}).encode()
    head = (f"PUT /v1/zones/{zone_uuid} HTTP/1.1\r\nHost: aerie\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _accepted_job(replies: BufferedReader) -> str:
    status = replies.readline().decode()
    assert status.startswith("HTTP/1.1 202 "), status
    length = None
    while (line := replies.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    assert length is not None, "a reply without Content-Length"
    return json.loads(replies.read(length))["jobUuid"]


def _burst(port: int, token: str, zone_uuid: str, first: int, count: int) -> list[str]:
    """PUT count updates of the zone, d-<first> on, without waiting for each reply (HTTP/1.1
    pipelining on one keep-alive connection): the server takes them in the order sent, and
    faster than its queue runs them, while a client waiting for each 202 is not. Returns the
    jobs, in order, once every reply has come: no request is left in flight."""
    requests = b"".join(_update(zone_uuid, token, f"d-{i}") for i in range(first, first + count))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(requests,), daemon=True)
        sender.start()
        with sock.makefile("rb") as replies:
            jobs = [_accepted_job(replies) for _ in range(count)]
        sender.join(timeout=30)
    return jobs


def _engine_of(server: Server) -> int:
    """The engine process `aerie up` started: its child."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == server.process.pid:
                    return int(entry.name)
    raise AssertionError("aerie up runs no engine process")


def _writer_turn_free(db_url: str) -> bool:
    """Whether no process holds SQLite's writer turn (MySQL has none to hold)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return True
    with open(f"{url.database}-turn", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
    return True


@contextlib.contextmanager
def _engine_paused(server: Server, db_url: str) -> Iterator[None]:
    """The engine stopped (SIGSTOP) outside any write, so that the API still accepts jobs:
    they wait, however fast the engine would have run them."""
    engine = _engine_of(server)
    for _ in range(100):
        os.kill(engine, signal.SIGSTOP)
        if _writer_turn_free(db_url):
            break
        os.kill(engine, signal.SIGCONT)
        time.sleep(0.01)
    else:
        raise AssertionError("the engine never let go of the writer turn")
    try:
        yield
    finally:
        os.kill(engine, signal.SIGCONT)


def _fill_queue(api: ApiClient, server: Server, db_url: str, zone_uuid: str) -> list[str]:
    """A burst of updates of one zone, sent while the engine is paused; returns once it
    runs them again, some have run and at least BACKLOG still wait."""
    assert api.token, "log in first"
    with _engine_paused(server, db_url):
        submitted = _burst(server.port, api.token, zone_uuid, 0, BURST)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # A waiting job's position counts the jobs of its queue ahead of it, not finished.
        last = api.get(f"/v1/api-jobs/{submitted[-1]}").json()
        ahead = last.get("position", 0)
        if last["state"] == "Waiting" and BACKLOG <= ahead < len(submitted) - 1:
            return submitted
        assert last["state"] == "Waiting" and ahead >= BACKLOG, \
            f"the backlog ran out before the kill: last job {last}"
    raise AssertionError("no job of the burst ran within 30 s")


def _jobs(api: ApiClient, count: int) -> dict[str, dict[str, Any]]:
    reply = api.get("/v1/api-jobs", params={"limit": count})
    assert reply.status_code == 200, reply.text
    return {job["uuid"]: job for job in reply.json()["inventories"]}


def _wait_all(api: ApiClient, submitted: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = _jobs(api, len(submitted) + 10)
        pending = sum(jobs.get(uuid, {}).get("state") not in FINISHED for uuid in submitted)
        if not pending:
            return jobs
        assert time.monotonic() < deadline, f"{pending} jobs unfinished after {timeout}s"
        time.sleep(0.05)


def test_kill_9_mid_queue_loses_nothing(db_url: str, tmp_path: Path) -> None:
    first = _start(db_url, tmp_path / "first")
    second: Server | None = None
    try:
        with httpx.Client(base_url=first.url, timeout=30) as http:
            api = ApiClient(http)
            api.login()
            zone_uuid = api.do("POST", "/v1/zones", {"name": "z-crash"})["uuid"]
            submitted = _fill_queue(api, first, db_url, zone_uuid)
            # Not always right after the look: on SQLite that look held the database, so the
            # worker would always be caught just starting a job, never in the middle of one.
            time.sleep(random.uniform(0, 0.005))
            first.process.kill()
            first.process.wait(timeout=10)
        killed_at = _millis(datetime.now(UTC))

        second = _start(db_url, tmp_path / "second")
        with httpx.Client(base_url=second.url, timeout=30) as http:
            api = ApiClient(http)
            api.login()
            views = _wait_all(api, submitted, timeout=60)
            zone = api.get(f"/v1/zones/{zone_uuid}").json()["inventory"]
        log = second.output()
        assert second.stop() == 0, log
    finally:
        for server in (first, second):
            if server is not None and server.process.poll() is None:
                server.process.kill()
                server.process.wait()

    # Nothing lost and nothing made up: the zone's queue holds exactly the accepted jobs.
    assert [uuid for uuid in submitted if uuid not in views] == []
    assert {uuid for uuid, job in views.items() if job["signature"] == f"zone:{zone_uuid}"} \
        == set(submitted)
    records = [JobRecord(uuid, views[uuid]["state"], _time(views[uuid]["startedAt"]),
                         _time(views[uuid]["finishedAt"]), views[uuid]["error"])
               for uuid in submitted]

    # At most the job running at the kill failed, and it says why.
    failed = [job for job in records if job.state == "Failed"]
    assert len(failed) <= 1, [job.error for job in failed]
    for job in failed:
        assert job.error["code"] == "Interrupted", job.error
        assert "stopped while this operation was running" in job.error["message"], job.error
    assert all(job.state == "Succeeded" for job in records if job not in failed)

    # One at a time, in the order they were submitted.
    assert all(job.started is not None and job.finished is not None for job in records)
    for earlier, later in pairwise(records):
        assert earlier.started <= later.started, (earlier, later)
        assert earlier.finished <= later.started, (earlier, later)
    assert all(job.started <= job.finished for job in records)

    # Before the kill: a run of finished jobs; then at most the interrupted one, started
    # before and failed after; then the backlog, all run by the restarted process.
    before = [job for job in records if job.finished <= killed_at]
    after = [job for job in records if job.started >= killed_at]
    assert before and records[:len(before)] == before
    assert all(job.started <= killed_at < job.finished for job in failed)
    assert records[len(before):] == failed + after
    # BACKLOG jobs waited a moment before the kill: they cannot all have run since.
    assert after, "the kill did not land mid-queue"
    assert (f"after restart: {len(failed)} interrupted jobs failed and rolled back, "
            f"{len(after)} waiting jobs queued again") in log

    # The last update ran last.
    assert zone["description"] == f"d-{len(submitted) - 1}"
