"""kill -9 of `aerie up` in the middle of a busy operation queue loses nothing: after a
restart on the same database every accepted job ends, in order, one at a time, and at most
the one that was running is failed as interrupted."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD, ApiClient

pytestmark = pytest.mark.slow

FIRST = 300  # updates sent before the queue is first looked at
SAMPLE = 10  # then it is looked at after every this many
BACKLOG = 10  # waiting jobs hoped for when the process is killed
PATIENCE = 800  # after this many, any waiting job will do: the queue is keeping up
MOST = 2000  # after this many, give up
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


def _jobs(api: ApiClient, count: int) -> dict[str, dict[str, Any]]:
    reply = api.get("/v1/api-jobs", params={"limit": count})
    assert reply.status_code == 200, reply.text
    return {job["uuid"]: job for job in reply.json()["inventories"]}


def _fill_queue(api: ApiClient, zone_uuid: str) -> tuple[list[str], int]:
    """Send updates of one zone, in order, until some have run and a backlog still waits.

    Returns the jobs, in order, and how many of them were unfinished when last looked at.
    Everything happens on this one thread, between requests: when the caller kills the
    server no request is in flight, so every job it made is one this list holds.
    """
    submitted: list[str] = []
    while True:
        reply = api.request("PUT", f"/v1/zones/{zone_uuid}",
                            json={"description": f"d-{len(submitted)}"})
        assert reply.status_code == 202, reply.text
        submitted.append(reply.json()["jobUuid"])
        if len(submitted) < FIRST or len(submitted) % SAMPLE:
            continue
        # A waiting job's position counts the jobs of its queue ahead of it, not finished.
        last = api.get(f"/v1/api-jobs/{submitted[-1]}").json()
        ahead = last.get("position", 0)
        if last["state"] == "Waiting" and ahead < len(submitted) - 1 \
                and (ahead >= BACKLOG or len(submitted) >= PATIENCE):
            return submitted, ahead + 1
        assert len(submitted) < MOST, f"no backlog to kill in: last job {last}"


def _wait_all(api: ApiClient, submitted: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = _jobs(api, len(submitted) + 10)
        if all(jobs.get(uuid, {}).get("state") in FINISHED for uuid in submitted):
            return jobs
        pending = sum(jobs.get(uuid, {}).get("state") not in FINISHED for uuid in submitted)
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
            submitted, unfinished = _fill_queue(api, zone_uuid)
            first.process.kill()
            first.process.wait(timeout=10)
        killed_at = _millis(datetime.now(UTC))

        second = _start(db_url, tmp_path / "second")
        with httpx.Client(base_url=second.url, timeout=30) as http:
            api = ApiClient(http)
            api.login()
            views = _wait_all(api, submitted, timeout=60)
            zone = api.get(f"/v1/zones/{zone_uuid}").json()["inventory"]
            signature = f"zone:{zone_uuid}"
        log = second.output()
        assert second.stop() == 0, log
    finally:
        for server in (first, second):
            if server is not None and server.process.poll() is None:
                server.process.kill()
                server.process.wait()

    # Nothing lost and nothing made up: the zone's queue holds exactly the accepted jobs.
    assert [uuid for uuid in submitted if uuid not in views] == []
    assert {uuid for uuid, job in views.items() if job["signature"] == signature} \
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
    # before and failed after; then the rest, all run by the restarted process.
    before = [job for job in records if job.finished <= killed_at]
    after = [job for job in records if job.started >= killed_at]
    assert before and records[:len(before)] == before
    assert all(job.started <= killed_at < job.finished for job in failed)
    assert records[len(before):] == failed + after
    if unfinished > BACKLOG:
        # So many jobs cannot all have run in the instant between the look and the kill.
        assert failed or after, "the kill did not land mid-queue"
    if failed or after:
        assert (f"after restart: {len(failed)} interrupted jobs failed and rolled back, "
                f"{len(after)} waiting jobs queued again") in log

    # The last update ran last.
    assert zone["description"] == f"d-{len(submitted) - 1}"
