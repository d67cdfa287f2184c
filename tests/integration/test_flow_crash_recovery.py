"""`aerie up` stopped while a VM-create flow waits on its host. A stop (SIGTERM) lets the flow
finish within its grace; a flow that outlasts the grace, or a kill -9, is left to the next
start on the same database, which fails the job as interrupted, rolls every step back, and
leaks nothing."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand, ApiJob, Host, VmInstance, Volume
from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD, ApiClient
from tests.support.cloud import build_cloud, vm_ips
from tests.support.invariants import assert_no_leaks

pytestmark = pytest.mark.slow

SLOW_HOST_MS = 1500  # every simulated command takes this long: long enough to kill mid-wait


def _start(db_url: str, directory: Path, **env: str) -> Server:
    directory.mkdir()
    return Server({"AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD, **env},
                  directory)


def _client(server: Server) -> tuple[httpx.Client, ApiClient]:
    http = httpx.Client(base_url=server.url, timeout=30)
    api = ApiClient(http)
    api.login()
    return http, api


def _wait(condition, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _create_vm_waiting_on_its_host(server: Server, latency_ms: int):
    """A VM-create flow that waits for its (slow) simulated host: the cloud, job and VM."""
    http, api = _client(server)
    try:
        cloud = build_cloud(api, hosts=1, image_size=0, simulator={"latencyMs": latency_ms})
        _wait(lambda: api.get(f"/v1/hosts/{cloud.hosts[0]}").json()["inventory"]["status"]
              == "Connected", 15, "the simulated host did not connect")
        job_uuid = api.request("POST", "/v1/vm-instances",
                               json=cloud.vm_request("cut-off")).json()["jobUuid"]

        def waiting_on_the_host() -> bool:
            progress = api.get(f"/v1/api-jobs/{job_uuid}").json().get("progress") or {}
            return progress.get("currentStep") == "vm.instantiate-volumes"
        _wait(waiting_on_the_host, 15, "the flow never showed it waits for the host")
        return cloud, job_uuid, api.get(f"/v1/api-jobs/{job_uuid}").json()["resourceUuid"]
    finally:
        http.close()


def _stopped_mid_create(db_url: str, tmp_path: Path, **env: str):
    """``aerie up`` stopped (SIGTERM) while a VM-create flow waits for its slow host: the
    cloud, job and VM, the exit code, the seconds the stop took, and the log."""
    server = _start(db_url, tmp_path / "first", **env)
    try:
        cloud, job_uuid, vm_uuid = _create_vm_waiting_on_its_host(server, SLOW_HOST_MS)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=90)
        return cloud, job_uuid, vm_uuid, code, time.monotonic() - started, server.output()
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_a_stop_lets_a_flow_waiting_on_its_host_finish(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'aerie.db'}"
    _, job_uuid, vm_uuid, code, seconds, output = _stopped_mid_create(db_url, tmp_path)
    # Its two agent steps take 3 s at most, within the default grace of 10 s.
    assert code == 0 and seconds < 10, (code, seconds, output)
    database = Database(db_url)
    with database.session() as db:
        assert db.get(ApiJob, job_uuid).state == "Succeeded"
        assert db.get(VmInstance, vm_uuid).state == "Running"
        assert_no_leaks(db)
    database.dispose()


def test_a_stop_outlasting_a_slow_host_leaves_its_flow_to_the_next_start(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'aerie.db'}"
    # A grace of 1 s: the flow's last agent step alone takes longer.
    cloud, job_uuid, vm_uuid, code, seconds, output = _stopped_mid_create(
        db_url, tmp_path, AERIE_STOP_GRACE_SECONDS="1")
    # It waited out its grace, not the engine's hard stop (51 s, then kill -9).
    assert code == 0 and 1 <= seconds < 15, (code, seconds, output)
    assert f"job {job_uuid} stays Running" in output
    _restart_rolls_back(db_url, tmp_path, cloud, job_uuid, vm_uuid)


def test_a_flow_cut_off_by_kill_9_is_rolled_back_on_restart(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'aerie.db'}"
    first = _start(db_url, tmp_path / "first")
    try:
        cloud, job_uuid, vm_uuid = _create_vm_waiting_on_its_host(first, SLOW_HOST_MS)
    finally:
        first.process.kill()
        first.process.wait()
    _restart_rolls_back(db_url, tmp_path, cloud, job_uuid, vm_uuid)


def _restart_rolls_back(db_url: str, tmp_path: Path, cloud, job_uuid: str,
                        vm_uuid: str) -> None:
    database = Database(db_url)
    with database.session() as db:  # cut off holding its host's memory, an IP and a volume
        vm = db.get(VmInstance, vm_uuid)
        assert vm.state == "Starting" and vm.host_uuid == cloud.hosts[0]
        assert db.get(Host, vm.host_uuid).available_memory_capacity < \
            db.get(Host, vm.host_uuid).total_memory_capacity
        assert len(vm_ips(db)) == 1 and db.query(Volume).count() == 1

    second = _start(db_url, tmp_path / "second")
    try:
        http, api = _client(second)
        job = api.wait_job(job_uuid, timeout=30)
        assert job["state"] == "Failed" and job["error"]["code"] == "Interrupted", job
        assert api.get(f"/v1/vm-instances/{vm_uuid}").status_code == 404
        host = api.get(f"/v1/hosts/{cloud.hosts[0]}").json()["inventory"]
        assert host["availableMemoryCapacity"] == host["totalMemoryCapacity"]
        http.close()
    finally:
        second.stop()
    with database.session() as db:
        assert_no_leaks(db)
        assert vm_ips(db) == [] and db.query(Volume).count() == 0
        # The host was told to clean up too (the rollback found it from the VM's row).
        sent = {c.name for c in db.query(AgentCommand).filter_by(host_uuid=cloud.hosts[0])}
        assert {"volumes.delete", "vm.destroy"} <= sent
    database.dispose()
