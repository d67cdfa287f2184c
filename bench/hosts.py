"""100,000 simulator hosts in the embedded control plane: how fast they are added, and
whether one process keeps them all reporting every 60 s.

    .venv/bin/python bench/hosts.py [--hosts 100000] [--seconds 90] [--db-url URL]

Hosts are added through the same domain call the AddSimulatorHost job makes, 500 per
transaction. Then the simulated hosts and the host tracker start: the bench waits until every
host has connected (warm-up), then runs --seconds of steady state and prints the report
rate, the worst lag of a report behind its schedule, how many hosts are Connected, and the
process's CPU and peak memory.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from chalicelib.compute.datacenter import create_cluster, create_zone  # noqa: E402
from chalicelib.compute.hosts import add_simulator_host  # noqa: E402
from chalicelib.context import Caller, Context  # noqa: E402
from chalicelib.db.models import Account, Host  # noqa: E402
from chalicelib.runtime.bootstrap import prepare_database  # noqa: E402
from chalicelib.runtime.embedded import EmbeddedRuntime  # noqa: E402
from chalicelib.settings import Settings  # noqa: E402

BATCH = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60,
                        help="steady-state run after every host has connected")
    parser.add_argument("--db-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url = args.db_url or f"sqlite:///{workdir}/hosts.db"
        runtime = EmbeddedRuntime(Settings.from_env({"AERIE_DB_URL": url,
                                                     "AERIE_VAR_DIR": workdir}))
        prepare_database(runtime.db, "bench-password")
        with runtime.db.session() as db:
            admin = db.scalar(select(Account.uuid).where(Account.name == "admin"))
            ctx = Context(db, Caller(admin, True))
            zone = create_zone(ctx, name=f"bench-{time.time_ns()}", description=None)
            cluster = create_cluster(ctx, zone_uuid=zone.uuid, name="sim", description=None,
                                     hypervisor_type="Simulator").uuid
        started = time.perf_counter()
        for first in range(0, args.hosts, BATCH):
            with runtime.db.session() as db:
                ctx = Context(db, Caller(admin, True))
                for n in range(first, min(first + BATCH, args.hosts)):
                    add_simulator_host(ctx, cluster_uuid=cluster, name=f"sim-{n}",
                                       description=None, management_ip=None, cpu_num=32,
                                       memory_size=2**37, simulator={})
        added = time.perf_counter() - started
        print(f"added {args.hosts:,} simulator hosts in {added:.1f} s "
              f"({args.hosts / added:,.0f}/s)", flush=True)

        fleet = runtime.simulated_hosts
        runtime.start_background()
        warm_start = time.perf_counter()
        while count(runtime, "Connected") < args.hosts:
            time.sleep(1)
        warm_up, warm_lag = time.perf_counter() - warm_start, fleet.worst_lag
        print(f"all connected {warm_up:.0f} s after start (each ran its first `connect`); "
              f"worst lag meanwhile {warm_lag:.1f} s", flush=True)

        fleet.worst_lag, reports_before = 0.0, fleet.reports_sent
        cpu_before = time.process_time()
        time.sleep(args.seconds)
        cpu = time.process_time() - cpu_before
        reports = fleet.reports_sent - reports_before
        connected, disconnected = count(runtime, "Connected"), count(runtime, "Disconnected")
        runtime.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"steady state, {args.seconds:.0f} s at a 60 s report interval:")
    print(f"  reports: {reports:,} ({reports / args.seconds:,.0f}/s; "
          f"{args.hosts / 60:,.0f}/s needed)")
    print(f"  worst report lag: {fleet.worst_lag:.2f} s")
    print(f"  hosts Connected: {connected:,} of {args.hosts:,}; Disconnected: {disconnected:,}")
    print(f"  CPU: {cpu / args.seconds * 100:.0f}% of one core; peak memory {peak_mib:,.0f} MiB")


def count(runtime: EmbeddedRuntime, status: str) -> int:
    with runtime.db.session() as db:
        return db.scalar(select(func.count()).select_from(Host).where(Host.status == status))


if __name__ == "__main__":
    main()
