"""API jobs wait in their operation queue: the signature and position show while they wait,
levels follow global configs, metrics show the queue, and a restart loses nothing."""
from __future__ import annotations

import json
import threading
import time

from sqlalchemy import select, update

from chalicelib.api.crud import UuidRequest
from chalicelib.api.jobs import run_job
from chalicelib.api.operation import FlowBinding, Operation
from chalicelib.db.base import utcnow
from chalicelib.db.database import Database
from chalicelib.db.models import Account, ApiJob
from chalicelib.errors import InvalidState
from chalicelib.flows.outcome import FlowOutcome
from chalicelib.ops import Ticket
from chalicelib.ops.levels import level_of
from chalicelib.runtime.embedded import EmbeddedRuntime
from chalicelib.settings import Settings


def _zone(api) -> str:
    return api.do("POST", "/v1/zones", {"name": "queued-zone"})["uuid"]


def test_waiting_jobs_show_their_queue_and_position_then_run_in_order(api, control_plane):
    zone = _zone(api)
    gate = threading.Event()

    def hold(release):
        gate.wait(10)
        release()

    # Something else holds the zone's only slot, as a long operation on it would.
    control_plane.jobs.queue.submit(Ticket("holder", f"zone:{zone}", 1, hold))
    try:
        jobs = [api.request("PUT", f"/v1/zones/{zone}", json={"description": f"d{n}"})
                .json()["jobUuid"] for n in range(3)]
        views = [api.get(f"/v1/api-jobs/{job}").json() for job in jobs]
        assert [v["state"] for v in views] == ["Waiting"] * 3
        assert {v["signature"] for v in views} == {f"zone:{zone}"}
        assert [v["position"] for v in views] == [0, 1, 2]
        metrics = api.get("/v1/metrics").json()["operations"]["UpdateZone"]
        assert metrics["queued"] == 3 and metrics["completed"] == 0
    finally:
        gate.set()
    finished = [api.wait_job(job) for job in jobs]
    assert [f["state"] for f in finished] == ["Succeeded"] * 3
    starts = [f["startedAt"] for f in finished]
    assert starts == sorted(starts)
    assert api.get(f"/v1/zones/{zone}").json()["inventory"]["description"] == "d2"
    metrics = api.get("/v1/metrics").json()["operations"]["UpdateZone"]
    assert metrics["completed"] == 3 and metrics["queued"] == 0
    assert metrics["maxWaitSeconds"] >= metrics["meanWaitSeconds"] > 0
    assert metrics["maxSeconds"] >= metrics["meanSeconds"] >= 0


def test_creating_calls_do_not_queue_behind_each_other(api):
    job = api.submit("POST", "/v1/zones", {"name": "own-queue"})
    assert job["signature"] == f"job:{job['uuid']}"


def test_levels_come_from_global_configs_changed_at_runtime(api, control_plane):
    with control_plane.db.session() as session:
        assert level_of(session, "host:h1") == 10
        assert level_of(session, "vm:v1") == 1
        assert level_of(session, "zone:z1") == 1
    api.do("PUT", "/v1/global-configurations/kvm/host.syncLevel", {"value": 3})
    with control_plane.db.session() as session:
        assert level_of(session, "host:h1") == 3
    refused = api.request("PUT", "/v1/global-configurations/kvm/host.syncLevel",
                          json={"value": 0})
    assert refused.status_code == 400


def test_metrics_are_for_admins(api):
    api.do("POST", "/v1/accounts", {"name": "tenant", "password": "tenant-password"})
    api.login("tenant", "tenant-password")
    assert api.get("/v1/metrics").status_code == 403


def _dummy_operation(calls: list) -> Operation:
    def run(ctx, request):
        calls.append(("run", request.uuid))
        return {"uuid": request.uuid}

    def undo(ctx, request):
        calls.append(("rollback", request.uuid))

    return Operation("Dummy", "PUT", "/dummy/{uuid}", UuidRequest, run, "test operation",
                     asynchronous=True, on_interrupted=undo)


def test_restart_fails_the_interrupted_job_hands_it_to_rollback_and_runs_the_rest(
        db_url, tmp_path):
    calls: list = []
    dummy = _dummy_operation(calls)
    runtime = EmbeddedRuntime(Settings.from_env({"AERIE_DB_URL": db_url,
                                                 "AERIE_VAR_DIR": str(tmp_path)}),
                              lookup=lambda name: dummy)
    try:
        with runtime.db.session() as session:
            admin = session.query(Account).filter_by(name="admin").one()
            rows = [ApiJob(api_name="Dummy", account_uuid=admin.uuid, signature="vm:1",
                           request=json.dumps({"uuid": f"{n:032x}"}),
                           state="Running" if n == 0 else "Waiting") for n in range(4)]
            now = utcnow().replace(microsecond=0)
            for n, row in enumerate(rows):
                row.created_at = now.replace(microsecond=n)
                session.add(row)
            session.flush()
            uuids = [row.uuid for row in rows]

        interrupted, requeued = runtime.resume_jobs()
        assert (interrupted, requeued) == (1, 3)
        deadline = time.monotonic() + 20
        while True:
            with runtime.db.session() as session:
                jobs = [session.get(ApiJob, uuid) for uuid in uuids]
            if all(j.state in ("Succeeded", "Failed") for j in jobs):
                break
            assert time.monotonic() < deadline, [j.state for j in jobs]
            time.sleep(0.01)
        assert [j.state for j in jobs] == ["Failed", "Succeeded", "Succeeded", "Succeeded"]
        assert json.loads(jobs[0].error)["code"] == "Interrupted"
        assert calls[0] == ("rollback", f"{0:032x}")
        assert calls[1:] == [("run", f"{n:032x}") for n in (1, 2, 3)]
    finally:
        runtime.close()


def _flow_operation(prepare) -> Operation:
    def settle(ctx, context, end):
        return {"uuid": context["resourceUuid"]}

    return Operation("DummyFlow", "PUT", "/dummy/{uuid}", UuidRequest, None, "test flow",
                     asynchronous=True, flow=FlowBinding("create-vm", prepare, settle))


def _run_one(db_url, tmp_path, op: Operation, uuid: str) -> ApiJob:
    runtime = EmbeddedRuntime(Settings.from_env({"AERIE_DB_URL": db_url,
                                                 "AERIE_VAR_DIR": str(tmp_path)}),
                              lookup=lambda name: op)
    try:
        with runtime.db.session() as session:
            admin = session.scalars(select(Account).filter_by(name="admin")).one()
            job = ApiJob(api_name=op.name, account_uuid=admin.uuid, signature=f"vm:{uuid}",
                         request=json.dumps({"uuid": uuid}))
            session.add(job)
            session.flush()
            job_uuid = job.uuid
        runtime.jobs.submit(job_uuid, f"vm:{uuid}", 1)
        deadline = time.monotonic() + 20
        while True:
            with runtime.db.session() as session:
                job = session.get(ApiJob, job_uuid)
            if job.state in ("Succeeded", "Failed"):
                return job
            assert time.monotonic() < deadline, job.state
            time.sleep(0.01)
    finally:
        runtime.close()


def test_a_flow_job_turns_running_only_with_its_prepare(db_url, tmp_path):
    """The job's Running and what prepare did commit together: while prepare runs the job
    is still Waiting, so a process that dies then leaves a job that is simply run again."""
    seen: list[str] = []

    def prepare(ctx, request):
        ctx.session.execute(update(Account).values(description="touched by prepare"))
        other = Database(db_url)  # another connection: it sees what is committed
        try:
            with other.session() as db:
                seen.append(db.scalar(select(ApiJob.state).where(
                    ApiJob.signature == f"vm:{request.uuid}")))
        finally:
            other.dispose()
        raise InvalidState("the resource changed since the call was accepted")

    job = _run_one(db_url, tmp_path, _flow_operation(prepare), f"{7:032x}")
    assert seen == ["Waiting"]
    assert job.state == "Failed" and json.loads(job.error)["code"] == "InvalidState"
    assert job.started_at is not None and job.finished_at >= job.started_at
    database = Database(db_url)
    try:
        with database.session() as db:  # prepare's work went with its transaction
            assert "touched by prepare" not in db.scalars(select(Account.description))
    finally:
        database.dispose()


class _CountingFlows:
    """A flow engine whose flows succeed at once; counts the flows it ran."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def run(self, chain: str, job_uuid: str, context: dict) -> FlowOutcome:
        self.runs.append(job_uuid)
        return FlowOutcome(chain, (), context=context)

    def still_running(self, chain: str, job_uuid: str) -> bool:
        return False


def test_two_deliveries_of_one_job_at_once_run_its_flow_once(db, db_url):
    """An SQS redelivery may reach a second worker while the first still prepares the job:
    only the one that turned it Running prepares it and runs its flow."""
    prepared: list[str] = []

    def prepare(ctx, request):
        prepared.append(request.uuid)
        time.sleep(0.3)  # the other delivery arrives meanwhile
        return {"resourceUuid": request.uuid}

    op = _flow_operation(prepare)
    with db.session() as session:
        admin = session.scalars(select(Account).filter_by(name="admin")).one()
        job = ApiJob(api_name=op.name, account_uuid=admin.uuid, signature="vm:twice",
                     request=json.dumps({"uuid": f"{9:032x}"}))
        session.add(job)
        session.flush()
        job_uuid = job.uuid
    flows = _CountingFlows()
    deliveries = [threading.Thread(target=run_job, args=(db, job_uuid, lambda _: op, flows))
                  for _ in range(2)]
    for delivery in deliveries:
        delivery.start()
    for delivery in deliveries:
        delivery.join(20)
    assert prepared == [f"{9:032x}"] and flows.runs == [job_uuid]
    with db.session() as session:
        assert session.get(ApiJob, job_uuid).state == "Succeeded"
