"""kill -9 of `aerie up` while a VM-create flow waits on its host: after a restart on the same
database the job is failed as interrupted, every step is rolled back, and nothing leaks."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from chalicelib.db.database import Database
from chalicelib.db.models import AgentCommand, Host, VmInstance, Volume
from tests.integration.test_server import Server
from tests.support.api import ADMIN_PASSWORD, ApiClient
from tests.support.cloud import build_cloud, vm_ips
from tests.support.invariants import assert_no_leaks

pytestmark = pytest.mark.slow

SLOW_HOST_MS = 1500  # every simulated command takes this long: long enough to kill mid-wait


def _start(db_url: str, directory: Path) -> Server:
    directory.mkdir()
    return Server({"AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, directory)


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


def test_a_flow_cut_off_by_kill_9_is_rolled_back_on_restart(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'aerie.db'}"
    first = _start(db_url, tmp_path / "first")
    try:
        http, api = _client(first)
        cloud = build_cloud(api, hosts=1, image_size=0,
                            simulator={"latencyMs": SLOW_HOST_MS})
        _wait(lambda: api.get(f"/v1/hosts/{cloud.hosts[0]}").json()["inventory"]["status"]
              == "Connected", 15, "the simulated host did not connect")
        job_uuid = api.request("POST", "/v1/vm-instances",
                               json=cloud.vm_request("cut-off")).json()["jobUuid"]

        def waiting_on_the_host() -> bool:
            progress = api.get(f"/v1/api-jobs/{job_uuid}").json().get("progress") or {}
            return progress.get("currentStep") == "vm.instantiate-volumes"
        _wait(waiting_on_the_host, 15, "the flow never showed it waits for the host")
        vm_uuid = api.get(f"/v1/api-jobs/{job_uuid}").json()["resourceUuid"]
        http.close()
    finally:
        first.process.kill()
        first.process.wait()

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
