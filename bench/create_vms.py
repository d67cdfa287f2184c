"""Seconds to create 1, 10, 100, 1,000 and 10,000 VMs through the HTTP API on simulator
hosts in the embedded control plane, next to the seed's ZStack figures; and what 1,000
creations would cost serverless.

    .venv/bin/python bench/create_vms.py [--sizes 1,10,100,1000,10000] [--hosts 1000]
        [--clients 48] [--workers 16] [--http-threads 16] [--db-url URL]

Starts its own `aerie up` on a free loopback port (SQLite under a temporary directory unless
--db-url names another database), builds a cloud through the API (a zone, a simulator
cluster of --hosts hosts with 32 CPUs and 128 GiB each, local primary storage, an image
store, a flat L2/L3 network with a /16 range, a 1 CPU / 512 MiB offering), waits until every
host is Connected, then for each batch size N submits N CreateVmInstance calls at once over
--clients keep-alive connections and polls their jobs until the last has Succeeded. The
clock runs from the first submit to the moment the last job is seen Succeeded. Any failed
job ends the run with a non-zero exit.

The serverless cost is computed from the compiled state machine
(statemachines/create-vm.asl.json) and the measured step time; see `serverless_cost`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
GIB = 2**30
ZSTACK_SECONDS = {1: 0.51, 10: 1.55, 100: 11.33, 1000: 103.0, 10000: 23 * 60.0}
GOAL_SECONDS = {1: 0.05, 1000: 10.0, 10000: 100.0}

# --- serverless cost ------------------------------------------------------------------------

# AWS list prices (us-east-1).
STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1000  # Standard workflows
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86
LAMBDA_MEMORY_GB = 1024 / 1024  # the step function's configured memory, 1,024 MB
SQS_FIFO_PER_REQUEST = 0.50 / 1_000_000
SQS_REQUESTS_PER_MESSAGE = 3  # send, receive, delete

ASL_PATH = ROOT / "statemachines" / "create-vm.asl.json"


@dataclass(frozen=True)
class SuccessPath:
    """The states a successful execution enters, from StartAt to its end."""

    states: tuple[str, ...]
    lambda_tasks: int  # tasks that invoke the step Lambda (agent steps included)
    agent_tasks: int  # of those, the ones that wait for a host agent's report (task token)

    @property
    def transitions(self) -> int:
        return len(self.states)


def success_path(asl: dict[str, Any]) -> SuccessPath:
    """Walk the state machine from StartAt through each state's Next (a Choice's Default)
    until a state that ends it; Catch branches are the failure paths and not taken."""
    states, name = [], asl["StartAt"]
    lambda_tasks = agent_tasks = 0
    for _ in range(len(asl["States"]) + 1):  # a longer walk is a loop
        state = asl["States"][name]
        states.append(name)
        kind = state["Type"]
        if kind == "Task" and ":lambda:invoke" in state["Resource"]:
            lambda_tasks += 1
            agent_tasks += state["Resource"].endswith(".waitForTaskToken")
        if kind in ("Succeed", "Fail") or state.get("End"):
            if kind == "Fail":
                raise ValueError(f"the path from StartAt ends in Fail state {name!r}")
            return SuccessPath(tuple(states), lambda_tasks, agent_tasks)
        if kind in ("Parallel", "Map"):
            raise ValueError(f"state {name!r} is a {kind}: count its branches by hand")
        name = state["Default"] if kind == "Choice" else state["Next"]
    raise ValueError("the state machine loops on its success path")


@dataclass(frozen=True)
class Cost:
    """Dollars per 1,000 creations, by service."""

    transitions: int
    step_functions: float
    lambda_requests: float
    lambda_duration: float
    sqs_operations: float
    sqs_agents: float

    @property
    def total(self) -> float:
        return (self.step_functions + self.lambda_requests + self.lambda_duration
                + self.sqs_operations + self.sqs_agents)


def serverless_cost(path: SuccessPath, seconds_per_step: float,
                    creations: int = 1000) -> Cost:
    """What ``creations`` successful CreateVmInstance flows cost on Step Functions, the step
    Lambda and SQS. ``seconds_per_step`` is an estimate of one step Lambda's billed time.
    Per creation: one operations-queue message, and one host-queue message per agent step
    (both queues FIFO); each message is a send, a receive and a delete."""
    invocations = path.lambda_tasks * creations
    return Cost(
        transitions=path.transitions,
        step_functions=path.transitions * creations * STEP_FUNCTIONS_PER_TRANSITION,
        lambda_requests=invocations * LAMBDA_PER_REQUEST,
        lambda_duration=invocations * seconds_per_step * LAMBDA_MEMORY_GB
        * LAMBDA_PER_GB_SECOND,
        sqs_operations=creations * SQS_REQUESTS_PER_MESSAGE * SQS_FIFO_PER_REQUEST,
        sqs_agents=creations * path.agent_tasks * SQS_REQUESTS_PER_MESSAGE
        * SQS_FIFO_PER_REQUEST,
    )


def load_success_path() -> SuccessPath:
    return success_path(json.loads(ASL_PATH.read_text()))


# --- a lean keep-alive HTTP/1.1 client --------------------------------------------------------


class Connection:
    def __init__(self, port: int, token: str | None) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n")
        if self.token:
            head += f"Authorization: Bearer {self.token}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed a keep-alive connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(payload) if payload else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Client:
    """A bounded pool of keep-alive connections."""

    def __init__(self, port: int, token: str | None, connections: int) -> None:
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._all = [Connection(port, token) for _ in range(connections)]
        for connection in self._all:
            self._idle.put_nowait(connection)

    async def call(self, method: str, path: str, body: dict | None = None,
                   expect: tuple[int, ...] = (200, 202)) -> Any:
        connection = await self._idle.get()
        try:
            status, reply = await connection.call(method, path, body)
        finally:
            self._idle.put_nowait(connection)
        if status not in expect:
            raise RuntimeError(f"{method} {path} answered {status}: {reply}")
        return reply

    async def submit_all(self, requests: list[tuple[str, str, dict | None]]) -> list[str]:
        replies = await asyncio.gather(*(self.call(m, p, b) for m, p, b in requests))
        return [reply["jobUuid"] for reply in replies]

    async def wait_jobs(self, job_uuids: list[str], timeout: float,
                        window: int = 8) -> dict[str, dict]:
        """Every job's final view, for few polls (each is a transaction the jobs wait for).
        Jobs finish roughly in submission order, so a round polls the oldest ``window``
        unfinished ones, and the next comes at once if all of them had finished, else after
        a pause of 1/50 of the time waited so far (2 ms to 200 ms)."""
        pending, done = list(job_uuids), {}
        started = time.monotonic()
        deadline = started + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(job_uuids)} jobs still unfinished "
                                   f"after {timeout:.0f} s")
            views = await asyncio.gather(*(self.call("GET", f"/v1/api-jobs/{uuid}")
                                           for uuid in pending[:window]))
            finished = {v["uuid"]: v for v in views if v["state"] in ("Succeeded", "Failed")}
            done.update(finished)
            pending = [uuid for uuid in pending if uuid not in finished]
            if pending and len(finished) < len(views):
                await asyncio.sleep(min(0.2, max(0.002, (time.monotonic() - started) / 50)))
        return done

    async def do(self, method: str, path: str, body: dict | None = None) -> dict:
        """One job, waited for; its result."""
        job = (await self.submit_all([(method, path, body)]))[0]
        view = (await self.wait_jobs([job], timeout=120))[job]
        if view["state"] != "Succeeded":
            sys.exit(f"{method} {path} failed: {view['error']}")
        return view["result"]

    def close(self) -> None:
        for connection in self._all:
            connection.close()


# --- the control plane ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workdir: Path, db_url: str, workers: int,
                 http_threads: int) -> subprocess.Popen:
    from aerie_process import start_aerie  # bench/ is on the path when run as a script

    return start_aerie(port, workdir, {
        "AERIE_ADMIN_PASSWORD": PASSWORD, "AERIE_DB_URL": db_url,
        "AERIE_JOB_WORKERS": str(workers), "AERIE_HTTP_THREADS": str(http_threads)})


def set_image_size(db_url: str, image_uuid: str, size: int) -> None:
    """Images are records until downloading lands: give this one the size a download would
    have measured (the root volumes' size), as tests/support/cloud.py does."""
    sys.path.insert(0, str(ROOT))
    from chalicelib.db.database import Database
    from chalicelib.db.models import Image

    database = Database(db_url)
    try:
        with database.session() as db:
            db.get(Image, image_uuid).size = size
    finally:
        database.dispose()


@dataclass
class Cloud:
    image: str
    offering: str
    l3: str
    hosts: list[str]


async def build_cloud(client: Client, args: argparse.Namespace) -> Cloud:
    zone = (await client.do("POST", "/v1/zones", {"name": "bench"}))["uuid"]
    cluster = (await client.do("POST", "/v1/clusters", {
        "zoneUuid": zone, "name": "sim", "hypervisorType": "Simulator"}))["uuid"]
    jobs = await client.submit_all([("POST", "/v1/hosts/simulator", {
        "clusterUuid": cluster, "name": f"sim-{n}", "cpuNum": 32, "memorySize": 128 * GIB,
        "simulator": {}}) for n in range(args.hosts)])
    views = await client.wait_jobs(jobs, timeout=600)
    failed = [v["error"] for v in views.values() if v["state"] != "Succeeded"]
    if failed:
        sys.exit(f"{len(failed)} AddSimulatorHost jobs failed, e.g. {failed[0]}")
    hosts = [views[job]["result"]["uuid"] for job in jobs]
    vms = sum(args.sizes)
    ps = (await client.do("POST", "/v1/primary-storage/local-storage", {
        "zoneUuid": zone, "name": "local", "url": "/var/lib/aerie/ps",
        "totalCapacity": max(vms, 1) * args.image_size * 2 or 1024 * GIB}))["uuid"]
    await client.do("POST", f"/v1/clusters/{cluster}/primary-storage/{ps}")
    bs = (await client.do("POST", "/v1/backup-storage/image-store", {
        "name": "images", "url": "/images", "hostname": "127.0.0.1"}))["uuid"]
    await client.do("POST", f"/v1/zones/{zone}/backup-storage/{bs}")
    image = (await client.do("POST", "/v1/images", {
        "name": "tiny", "url": "http://images/tiny.qcow2", "backupStorageUuids": [bs]}))["uuid"]
    if args.image_size:
        set_image_size(args.db_url, image, args.image_size)
    l2 = (await client.do("POST", "/v1/l2-networks/no-vlan", {
        "zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"}))["uuid"]
    await client.do("POST", f"/v1/l2-networks/{l2}/clusters/{cluster}")
    l3 = (await client.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2,
                                                      "name": "flat-l3"}))["uuid"]
    await client.do("POST", f"/v1/l3-networks/{l3}/ip-ranges/by-cidr",
                    {"name": "r", "networkCidr": "10.0.0.0/16"})
    offering = (await client.do("POST", "/v1/instance-offerings", {
        "name": "small", "cpuNum": 1, "memorySize": 512 * 2**20}))["uuid"]
    return Cloud(image, offering, l3, hosts)


async def wait_connected(client: Client, hosts: list[str], timeout: float = 300) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"{len(pending)} simulator hosts not Connected after {timeout:.0f} s")
        views = await asyncio.gather(*(client.call("GET", f"/v1/hosts/{h}") for h in pending))
        pending = [v["inventory"]["uuid"] for v in views
                   if v["inventory"]["status"] != "Connected"]
        if pending:
            await asyncio.sleep(0.5)
    return time.perf_counter() - started


@dataclass
class Batch:
    size: int
    seconds: float
    server_seconds: float  # first job created → last job finished, by the jobs' own clocks
    run_seconds: list[float]  # each job's startedAt → finishedAt
    # CPU (user + system) during the batch: `aerie up`'s API process and its engine process
    api_cpu_seconds: float
    engine_cpu_seconds: float


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (empty where there is none)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, user and system, from /proc (0 where there is none)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def server_cpu(server_pid: int) -> tuple[float, float]:
    """CPU seconds so far of the API process and of its children (the engine process)."""
    children = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
                and (_stat(int(entry.name))[1:2] or [""])[0] == str(server_pid)]
    return cpu_seconds(server_pid), sum(cpu_seconds(pid) for pid in children)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def create_batch(client: Client, cloud: Cloud, size: int, server_pid: int) -> Batch:
    requests = [("POST", "/v1/vm-instances", {
        "name": f"vm-{size}-{n}", "imageUuid": cloud.image,
        "instanceOfferingUuid": cloud.offering, "l3NetworkUuids": [cloud.l3]})
        for n in range(size)]
    started, (api_before, engine_before) = time.perf_counter(), server_cpu(server_pid)
    jobs = await client.submit_all(requests)
    views = await client.wait_jobs(jobs, timeout=max(60.0, size * 0.5))
    seconds = time.perf_counter() - started
    api_after, engine_after = server_cpu(server_pid)
    failed = [v for v in views.values() if v["state"] != "Succeeded"]
    if failed:
        print(f"FAILED: {len(failed)} of {size} CreateVmInstance jobs failed, e.g. "
              f"{json.dumps(failed[0]['error'])}", file=sys.stderr)
        sys.exit(1)
    not_running = [v for v in views.values() if v["result"]["state"] != "Running"]
    if not_running:
        sys.exit(f"FAILED: {len(not_running)} created VMs are not Running, e.g. "
                 f"{not_running[0]['result']}")
    first = min(_time(v["createdAt"]) for v in views.values())
    last = max(_time(v["finishedAt"]) for v in views.values())
    runs = [(_time(v["finishedAt"]) - _time(v["startedAt"])).total_seconds()
            for v in views.values()]
    return Batch(size, seconds, (last - first).total_seconds(), runs,
                 api_after - api_before, engine_after - engine_before)


async def run(args: argparse.Namespace, port: int,
              server_pid: int) -> tuple[list[Batch], float]:
    login = Client(port, None, 1)
    token = (await login.call("PUT", "/v1/accounts/login", {
        "accountName": "admin", "password": PASSWORD}))["inventory"]["token"]
    login.close()
    client = Client(port, token, args.clients)
    try:
        started = time.perf_counter()
        cloud = await build_cloud(client, args)
        print(f"cloud built: {args.hosts:,} simulator hosts added in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        connected = await wait_connected(client, cloud.hosts)
        print(f"all {args.hosts:,} hosts Connected {connected:.1f} s later", flush=True)
        # One VM first, not measured: the first flow loads chains and warms caches.
        await create_batch(client, cloud, 1, server_pid)
        batches = []
        for size in args.sizes:
            batch = await create_batch(client, cloud, size, server_pid)
            print(f"  {size:>6,} VMs: {batch.seconds:8.2f} s", flush=True)
            batches.append(batch)
        return batches, connected
    finally:
        client.close()


def print_table(batches: list[Batch], args: argparse.Namespace) -> None:
    database = "SQLite" if args.db_url.startswith("sqlite") else args.db_url.split(":")[0]
    print(f"\nCreateVmInstance through the HTTP API, {args.hosts:,} simulator hosts, "
          f"{os.cpu_count()} cores, {database}, {args.workers} job workers, "
          f"{args.http_threads} HTTP threads, {args.clients} client connections")
    print(f"| {'VMs':>6} | {'seconds':>8} | {'VMs/s':>7} | {'server s':>8} | "
          f"{'job p50 s':>9} | {'CPU ms/VM':>9} | {'API+engine':>10} | {'ZStack s':>8} | "
          f"{'goal s':>6} |")
    print(f"|{'-' * 8}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 11}|{'-' * 12}|"
          f"{'-' * 10}|{'-' * 8}|")
    for b in batches:
        runs = sorted(b.run_seconds)
        goal = GOAL_SECONDS.get(b.size)
        zstack = ZSTACK_SECONDS.get(b.size)
        print(f"| {b.size:>6,} | {b.seconds:>8.2f} | {b.size / b.seconds:>7,.0f} | "
              f"{b.server_seconds:>8.2f} | {runs[len(runs) // 2]:>9.3f} | "
              f"{(b.api_cpu_seconds + b.engine_cpu_seconds) * 1000 / b.size:>9.1f} | "
              f"{b.api_cpu_seconds * 1000 / b.size:>4.1f} + "
              f"{b.engine_cpu_seconds * 1000 / b.size:>4.1f} | "
              f"{f'{zstack:,.2f}' if zstack else '—':>8} | "
              f"{f'{goal:g}' if goal else '—':>6} |")
    print("seconds: first submit to last job seen Succeeded (client clock); server s: first "
          "job created to last finished (the jobs' timestamps); job p50: a job's own run; CPU "
          "ms/VM: the server's CPU time over the batch, per VM (API+engine: its two "
          "processes')")


def print_cost(batches: list[Batch]) -> None:
    path = load_success_path()
    single = next((b for b in batches if b.size == 1), None)
    # Estimated: an uncontended job's run spread over the Lambdas a serverless run makes
    # (the flow's steps, plus the consumer's prepare and settle).
    seconds_per_step = (single.run_seconds[0] / (path.lambda_tasks + 2)
                        if single else 0.010)
    cost = serverless_cost(path, seconds_per_step)
    print(f"\nServerless cost per 1,000 creations (successful path of {ASL_PATH.name}: "
          f"{path.transitions} state transitions, {path.lambda_tasks} step Lambdas of which "
          f"{path.agent_tasks} wait for an agent)")
    print(f"  Step Functions (Standard, $0.025 / 1,000 transitions): "
          f"{path.transitions:,} × 1,000 → ${cost.step_functions:.4f}")
    print(f"  Lambda requests ($0.20 / 1M): {path.lambda_tasks * 1000:,} → "
          f"${cost.lambda_requests:.4f}")
    print(f"  Lambda duration (ESTIMATE: {seconds_per_step * 1000:.1f} ms per step, the "
          f"embedded 1-VM job's run ÷ {path.lambda_tasks + 2}, at 1,024 MB): "
          f"${cost.lambda_duration:.4f}")
    print(f"  SQS operations queue (FIFO, send+receive+delete, $0.50 / 1M): "
          f"${cost.sqs_operations:.4f}")
    print(f"  SQS host agent queues (FIFO, {path.agent_tasks} commands × 3 requests, "
          f"$0.50 / 1M): ${cost.sqs_agents:.4f}")
    print(f"  total: ${cost.total:.4f} per 1,000 VMs created "
          f"(not counted: API Gateway, the API/report/consumer Lambdas, Aurora, "
          f"SQS empty receives)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000,10000",
                        type=lambda text: [int(n) for n in text.split(",")])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=48,
                        help="concurrent keep-alive HTTP connections")
    parser.add_argument("--workers", type=int, default=16, help="AERIE_JOB_WORKERS")
    parser.add_argument("--http-threads", type=int, default=16, help="AERIE_HTTP_THREADS")
    parser.add_argument("--image-size", type=int, default=GIB, help="bytes of each root volume")
    parser.add_argument("--db-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    # Killed or interrupted: still stop the server (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    with tempfile.TemporaryDirectory() as workdir:
        args.db_url = args.db_url or f"sqlite:///{workdir}/aerie.db"
        port = free_port()
        server = start_server(port, Path(workdir), args.db_url, args.workers,
                              args.http_threads)
        try:
            batches, _ = asyncio.run(run(args, port, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    print_table(batches, args)
    print_cost(batches)


if __name__ == "__main__":
    main()
