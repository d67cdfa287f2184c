"""Instructions per VM created, counted by callgrind: a figure that, unlike seconds, does not
drift with the machine's load, for comparing two versions of the create path.

    .venv/bin/python bench/vm_instructions.py [--vms 100]

Runs the embedded control plane in this one process (API through the WSGI app, engine,
simulated hosts), builds a cloud of 50 simulator hosts, then creates --vms VMs at once and
waits for them. It runs itself under ``valgrind --tool=callgrind`` (Debian package valgrind)
with instrumentation switched on only around the creations, and prints the instructions
they took, per VM. About a minute for 100 VMs; repeated runs agree to about 1 %.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
UNDER_CALLGRIND = "AERIE_BENCH_UNDER_CALLGRIND"


def create_vms(count: int) -> None:
    """The measured run (under callgrind): instrumentation is on only while VMs are made."""
    import httpx

    from chalicelib import runtime
    from chalicelib.db.database import Database
    from chalicelib.runtime.bootstrap import prepare_database
    from chalicelib.runtime.embedded import EmbeddedRuntime
    from chalicelib.runtime.wsgi import ChaliceWsgiApp
    from chalicelib.settings import Settings
    from tests.support.api import ADMIN_PASSWORD, ApiClient
    from tests.support.cloud import build_cloud

    workdir = tempfile.mkdtemp(prefix="aerie-bench-")
    url = f"sqlite:///{workdir}/aerie.db"
    database = Database(url)
    prepare_database(database, ADMIN_PASSWORD)
    database.dispose()
    embedded = EmbeddedRuntime(Settings.from_env(
        {"AERIE_DB_URL": url, "AERIE_VAR_DIR": workdir, "AERIE_JOB_WORKERS": "16"}))
    runtime.install(embedded)
    embedded.start_background()
    import app as chalice_app

    http = httpx.Client(transport=httpx.WSGITransport(app=ChaliceWsgiApp(chalice_app.app)),
                        base_url="http://aerie", timeout=600)
    api = ApiClient(http)
    api.login()
    cloud = build_cloud(api, hosts=50, cpu_num=64, memory_size=512 * 2**30, storage=2**50,
                        image_size=0, cidr="10.0.0.0/16", vm_cpu=1, vm_memory=2**29)
    deadline = time.monotonic() + 600
    while any(api.get(f"/v1/hosts/{host}").json()["inventory"]["status"] != "Connected"
              for host in cloud.hosts):
        if time.monotonic() > deadline:
            sys.exit("the simulated hosts did not connect")
        time.sleep(0.1)
    instrument("on")
    jobs = [api.request("POST", "/v1/vm-instances", json=cloud.vm_request(f"vm-{n}"))
            .json()["jobUuid"] for n in range(count)]
    # Polls through the API would add a number of requests that depends on timing.
    while (states := _job_states(embedded.db, jobs)).get("Waiting", 0) \
            + states.get("Running", 0):
        if time.monotonic() > deadline + 600:
            sys.exit(f"the creations did not end: {states}")
        time.sleep(0.2)
    instrument("off")
    if states != {"Succeeded": count}:
        sys.exit(f"not every creation succeeded: {states}")
    os._exit(0)  # the simulated hosts' threads need no orderly stop here


def _job_states(database, jobs: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from chalicelib.db.models import ApiJob

    with database.session(reads_only=True) as db:
        return dict(db.execute(select(ApiJob.state, func.count()).where(
            ApiJob.uuid.in_(jobs)).group_by(ApiJob.state)).all())


def instrument(state: str) -> None:
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=100)
    args = parser.parse_args()
    if os.environ.get(UNDER_CALLGRIND):
        create_vms(args.vms)
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}/callgrind.%p", sys.executable, __file__,
             "--vms", str(args.vms)],
            env={**os.environ, UNDER_CALLGRIND: "1"}, capture_output=True, text=True)
    collected = re.search(r"Collected : ([\d,]+)", run.stderr)
    if run.returncode != 0 or collected is None:
        sys.exit(f"the measured run failed:\n{run.stdout}\n{run.stderr[-3000:]}")
    per_vm = int(collected.group(1).replace(",", "")) / args.vms
    print(f"{args.vms} VMs created in process: {per_vm / 1e6:.2f} M instructions per VM "
          "(API, engine and simulated hosts)")


if __name__ == "__main__":
    main()
