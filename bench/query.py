"""The query API on a million VMs in MariaDB: latency of typical queries and their plans.

    .venv/bin/python bench/query.py [--vms 1000000] [--runs 200] [--db-url URL] [--no-http]
        [--buffer-pool-gib 3]

Loads 10 zones, 100 clusters, 10,000 hosts, 1,000 L2/L3 networks and --vms VMs with one NIC
each (all in proportion to --vms) into a database of its own (aerie_bench_query on
127.0.0.1:3306 by default) with multi-row INSERTs, 10,000 rows a statement. The load is
cached: rows have uuids derived from their number, a run that finds the full set skips
loading and one that finds part of it carries on where the last stopped.

Then runs each query --runs times through ``chalicelib.query.query`` (what the API's
Query<Kind> operations call, as admin), prints p50/p95, then each once more through the HTTP
path (the WSGI app, a logged-in admin), and the MariaDB EXPLAIN of each statement, flagging
any full scan (type=ALL) of vm_instances or vm_nics.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pymysql  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402

from chalicelib.context import Caller, Context  # noqa: E402
from chalicelib.db.base import Base, utcnow  # noqa: E402
from chalicelib.db.database import Database  # noqa: E402
from chalicelib.db.models import (  # noqa: E402
    Account,
    Cluster,
    Host,
    L2Network,
    L3Network,
    VmInstance,
    VmNic,
    Zone,
)
from chalicelib.query import QuerySpec, compile_query, query  # noqa: E402
from chalicelib.runtime.bootstrap import prepare_database  # noqa: E402

DATABASE = "aerie_bench_query"
SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
PASSWORD = "bench-password"
BATCH = 10_000
FULL_SCAN_WATCH = {"vm_instances", "vm_nics"}


def uid(prefix: str, n: int) -> str:
    """Deterministic uuids, so a load can resume and queries can pick rows by number."""
    return f"{prefix}{n:0{32 - len(prefix)}x}"


def ip_of(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class Shape:
    def __init__(self, vms: int) -> None:
        self.vms = vms
        self.zones = max(1, vms // 100_000)
        self.clusters = max(1, vms // 10_000)
        self.hosts = max(1, vms // 100)
        self.l3s = max(1, vms // 1_000)


def ensure_database(name: str) -> str:
    connection = pymysql.connect(**SERVER)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    finally:
        connection.close()
    return f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"


def size_buffer_pool(gib: float) -> None:
    """A production database keeps its working set in memory (Aurora gives InnoDB about three
    quarters of the instance's); MariaDB's default of 128 MiB holds a tenth of these tables,
    which makes a join that touches a thousand scattered VMs a thousand disk reads. The
    setting is dynamic and only costs memory; it stays until MariaDB restarts."""
    connection = pymysql.connect(**SERVER)
    try:
        with connection.cursor() as cursor:
            if gib:
                cursor.execute(f"SET GLOBAL innodb_buffer_pool_size = {int(gib * 2**30)}")
            cursor.execute("SELECT @@innodb_buffer_pool_size")
            print(f"innodb_buffer_pool_size: {cursor.fetchone()[0] / 2**30:.2f} GiB")
    finally:
        connection.close()


def count(db: Database, model: type[Base]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _bulk(session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    for first in range(0, len(rows), BATCH):
        session.execute(insert(model), rows[first:first + BATCH])


def load(db: Database, shape: Shape, admin: str) -> None:
    now = utcnow()
    common = {"account_uuid": admin, "create_date": now, "last_op_date": now,
              "description": None}
    if count(db, Zone) < shape.zones:
        with db.session() as s:
            s.execute(text("SET foreign_key_checks=0"))
            _bulk(s, Zone, [{**common, "uuid": uid("a0", z), "name": f"zone-{z}",
                             "state": "Enabled", "type": "zstack"}
                            for z in range(shape.zones)])
            _bulk(s, Cluster, [{**common, "uuid": uid("a1", c), "name": f"cluster-{c}",
                                "zone_uuid": uid("a0", c % shape.zones), "state": "Enabled",
                                "hypervisor_type": "KVM", "type": "zstack"}
                               for c in range(shape.clusters)])
            _bulk(s, Host, [{**common, "uuid": uid("a2", h), "name": f"host-{h}",
                             "zone_uuid": uid("a0", h % shape.clusters % shape.zones),
                             "cluster_uuid": uid("a1", h % shape.clusters),
                             "management_ip": f"192.168.{h >> 8 & 255}.{h & 255}",
                             "status": "Connected", "state": "Enabled",
                             "hypervisor_type": "KVM", "ssh_port": 22, "cpu_num": 64,
                             "total_cpu_capacity": 64, "available_cpu_capacity": 64,
                             "total_memory_capacity": 2**38, "available_memory_capacity": 2**38}
                            for h in range(shape.hosts)])
            _bulk(s, L2Network, [{**common, "uuid": uid("a3", n), "name": f"l2-{n}",
                                  "zone_uuid": uid("a0", n % shape.zones),
                                  "type": "L2VlanNetwork", "physical_interface": "eth0",
                                  "vlan": 100 + n % 3000} for n in range(shape.l3s)])
            _bulk(s, L3Network, [{**common, "uuid": uid("a4", n), "name": f"l3-{n}",
                                  "l2_network_uuid": uid("a3", n),
                                  "zone_uuid": uid("a0", n % shape.zones),
                                  "type": "L3BasicNetwork", "category": "Private",
                                  "system": False, "ip_version": 4, "state": "Enabled"}
                                 for n in range(shape.l3s)])
    done = count(db, VmInstance)
    started = time.perf_counter()
    for first in range(done - done % BATCH, shape.vms, BATCH):
        with db.session() as s:
            s.execute(text("SET foreign_key_checks=0, unique_checks=0"))
            numbers = range(first, min(first + BATCH, shape.vms))
            vms, nics = [], []
            for n in numbers:
                host = n % shape.hosts
                cluster = host % shape.clusters
                vms.append({**common, "uuid": uid("b0", n), "name": f"vm-{n}",
                            "zone_uuid": uid("a0", cluster % shape.zones),
                            "cluster_uuid": uid("a1", cluster), "host_uuid": uid("a2", host),
                            "last_host_uuid": uid("a2", host), "type": "UserVm",
                            "state": "Running", "cpu_num": 1 + n % 8, "cpu_speed": 0,
                            "memory_size": 2**30, "platform": "Linux",
                            "architecture": "x86_64", "hypervisor_type": "KVM"})
                nics.append({**common, "uuid": uid("b1", n), "name": f"nic-{n}",
                             "vm_instance_uuid": uid("b0", n),
                             "l3_network_uuid": uid("a4", n % shape.l3s), "ip": ip_of(n),
                             "mac": f"fa:{n >> 32 & 255:02x}:{n >> 24 & 255:02x}:"
                                    f"{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
                             "netmask": "255.0.0.0", "gateway": "10.0.0.1", "device_id": 0})
            s.execute(delete_from(VmNic, numbers))
            s.execute(delete_from(VmInstance, numbers))
            _bulk(s, VmInstance, vms)
            _bulk(s, VmNic, nics)
        loaded = min(first + BATCH, shape.vms)
        if loaded % 100_000 == 0 or loaded == shape.vms:
            rate = (loaded - done) / (time.perf_counter() - started)
            print(f"  loaded {loaded:,} VMs and NICs ({rate:,.0f} VMs/s)", flush=True)


def delete_from(model: type[Base], numbers: range):
    """A batch is redone whole: remove whatever part of it an interrupted run left."""
    prefix = "b0" if model is VmInstance else "b1"
    return model.__table__.delete().where(model.uuid.between(uid(prefix, numbers.start),
                                                             uid(prefix, numbers.stop - 1)))


Case = tuple[str, type[Base], Callable[[random.Random], QuerySpec]]


def cases(shape: Shape) -> list[Case]:
    def pick(r: random.Random) -> int:
        return r.randrange(shape.vms)

    def prefix(r: random.Random) -> int:
        """All but the last digit of a VM number as long as the largest: ~11 names match."""
        return r.randrange(shape.vms // 10, shape.vms) // 10

    return [
        ("VmInstance by uuid", VmInstance,
         lambda r: QuerySpec(conditions=(f"uuid={uid('b0', pick(r))}",))),
        ("VmInstance by name", VmInstance,
         lambda r: QuerySpec(conditions=(f"name=vm-{pick(r)}",))),
        ("Zone vmInstance.vmNics.ip= (2 hops)", Zone,
         lambda r: QuerySpec(conditions=(f"vmInstance.vmNics.ip={ip_of(pick(r))}",))),
        ("Zone vmInstance.vmNics.l3Network.name= count (3 hops)", Zone,
         lambda r: QuerySpec(conditions=(
             f"vmInstance.vmNics.l3Network.name=l3-{r.randrange(shape.l3s)}",), count=True)),
        ("VmInstance name~=prefix% (about 11 matches)", VmInstance,
         lambda r: QuerySpec(conditions=(f"name~=vm-{prefix(r)}%",))),
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_cases(db: Database, admin: Caller, shape: Shape, runs: int) -> None:
    rng = random.Random(7)
    print(f"\n{'query':58} {'p50 ms':>8} {'p95 ms':>8}  (through chalicelib.query.query, "
          f"{runs} runs each)")
    for label, model, make in cases(shape):
        timings = []
        for _ in range(runs):
            spec = make(rng)
            with db.session() as session:
                began = time.perf_counter()
                reply = query(Context(session, admin), model, spec)
                timings.append((time.perf_counter() - began) * 1000)
            assert reply.get("total", 1) >= 1 and (spec.count or reply["inventories"]), \
                (label, spec, reply)
        p50 = statistics.median(timings)
        mark = "" if p50 <= 20 else "  <-- over the 20 ms goal"
        print(f"{label:58} {p50:8.2f} {percentile(timings, 0.95):8.2f}{mark}", flush=True)


def explain(db: Database, admin: Caller, shape: Shape) -> int:
    scans = 0
    rng = random.Random(11)
    print("\nEXPLAIN (table type key rows):")
    for label, model, make in cases(shape):
        spec = make(rng)
        plan = compile_query(model, spec, admin)
        statement = plan.total if spec.count else plan.rows
        sql = str(statement.compile(dialect=db.engine.dialect,
                                    compile_kwargs={"literal_binds": True}))
        with db.session() as session:
            rows = session.execute(text("EXPLAIN " + sql.replace("%", "%%"))).mappings().all()
        print(f"  {label}")
        for row in rows:
            full = row["type"] == "ALL" and row["table"] in FULL_SCAN_WATCH
            scans += full
            print(f"    {row['table']!s:24} {row['type']!s:12} {row['key']!s:40} "
                  f"{row['rows']!s:>8}{'  <-- FULL SCAN' if full else ''}")
    return scans


def http_pass(url: str, shape: Shape) -> None:
    import os
    import tempfile

    import httpx

    from chalicelib import runtime
    from chalicelib.runtime.embedded import EmbeddedRuntime
    from chalicelib.runtime.wsgi import ChaliceWsgiApp
    from chalicelib.settings import Settings

    os.environ.setdefault("AWS_XRAY_SDK_ENABLED", "false")
    paths = {VmInstance: "/v1/vm-instances", Zone: "/v1/zones"}
    with tempfile.TemporaryDirectory() as workdir:
        embedded = EmbeddedRuntime(Settings.from_env({"AERIE_DB_URL": url,
                                                      "AERIE_VAR_DIR": workdir}))
        runtime.install(embedded)
        try:
            import app as chalice_app

            wsgi = ChaliceWsgiApp(chalice_app.app)
            with httpx.Client(transport=httpx.WSGITransport(app=wsgi),
                              base_url="http://aerie") as http:
                token = http.put("/v1/accounts/login", json={
                    "accountName": "admin", "password": PASSWORD}).json()["inventory"]["token"]
                headers = {"Authorization": f"Bearer {token}"}
                rng = random.Random(13)
                print("\nthrough HTTP (WSGI app, login, validation, rendering), 20 runs each:")
                for label, model, make in cases(shape):
                    timings = []
                    for _ in range(20):
                        spec = make(rng)
                        params = [("q", c) for c in spec.conditions]
                        if spec.count:
                            params.append(("count", "true"))
                        began = time.perf_counter()
                        reply = http.get(paths[model], params=params, headers=headers)
                        timings.append((time.perf_counter() - began) * 1000)
                        assert reply.status_code == 200, reply.text
                    print(f"  {label:56} p50 {statistics.median(timings):7.2f} ms", flush=True)
        finally:
            runtime.install(None)
            embedded.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--db-url", help=f"default: {DATABASE} on 127.0.0.1:3306")
    parser.add_argument("--no-http", action="store_true", help="skip the pass through HTTP")
    parser.add_argument("--buffer-pool-gib", type=float, default=3.0,
                        help="size MariaDB's buffer pool first (0: leave it as it is)")
    args = parser.parse_args()
    url = args.db_url or ensure_database(DATABASE if args.vms == 1_000_000
                                         else f"{DATABASE}_{args.vms}")
    shape = Shape(args.vms)
    db = Database(url)
    prepare_database(db, PASSWORD)
    with db.session() as session:
        admin_uuid = session.scalar(select(Account.uuid).where(Account.name == "admin"))
    if count(db, VmInstance) == shape.vms and count(db, VmNic) == shape.vms:
        print(f"{shape.vms:,} VMs already loaded in {url.split('@')[-1]}")
    else:
        print(f"loading {shape.zones} zones, {shape.clusters} clusters, {shape.hosts:,} hosts, "
              f"{shape.l3s:,} L3 networks, {shape.vms:,} VMs with a NIC each", flush=True)
        began = time.perf_counter()
        load(db, shape, admin_uuid)
        print(f"loaded in {time.perf_counter() - began:.0f} s", flush=True)
        with db.session() as session:
            for table in ("zones", "clusters", "hosts", "l3_networks", "vm_instances",
                          "vm_nics"):
                session.execute(text(f"ANALYZE TABLE {table}"))
    admin = Caller(account_uuid=admin_uuid, is_admin=True)
    if not args.db_url:
        size_buffer_pool(args.buffer_pool_gib)
    run_cases(db, admin, shape, args.runs)
    scans = explain(db, admin, shape)
    if not args.no_http:
        http_pass(url, shape)
    print(f"\nfull scans of {'/'.join(sorted(FULL_SCAN_WATCH))}: {scans}")
    db.dispose()


if __name__ == "__main__":
    main()
