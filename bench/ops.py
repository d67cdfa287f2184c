"""The embedded operation queue: dispatch rate and the latency one queue hop adds.

    .venv/bin/python bench/ops.py [--operations 200000] [--signatures 1000] [--workers 8]

Dispatch rate: no-op operations spread over 1,000 signatures (level 1) are submitted as fast
as one thread can; the clock stops when the last has run. Hop latency: on an idle queue, the
time from submit() to the operation starting, one at a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chalicelib.ops import Ticket  # noqa: E402
from chalicelib.ops.local import LocalQueue  # noqa: E402


def dispatch_rate(operations: int, signatures: int, workers: int) -> float:
    queue = LocalQueue(workers)
    done = threading.Semaphore(0)
    remaining = [operations]
    lock = threading.Lock()

    def run(release):
        release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.release()

    started = time.perf_counter()
    for n in range(operations):
        queue.submit(Ticket(f"op-{n}", f"vm:{n % signatures}", 1, run))
    done.acquire()
    elapsed = time.perf_counter() - started
    queue.shutdown()
    return operations / elapsed


def hop_latency(samples: int, workers: int) -> list[float]:
    queue = LocalQueue(workers)
    latencies = []
    for n in range(samples):
        ran = threading.Event()
        submitted = time.perf_counter()
        begun = [0.0]

        def run(release, begun=begun, ran=ran):
            begun[0] = time.perf_counter()
            release()
            ran.set()

        queue.submit(Ticket(f"hop-{n}", "vm:hop", 1, run))
        ran.wait()
        latencies.append(begun[0] - submitted)
    queue.shutdown()
    return sorted(latencies)


def durable_rate(jobs: int, signatures: int, workers: int) -> float:
    """The same, but as the API does it: each operation a job row committed before it is
    queued, and run through run_job (three more short transactions), on SQLite."""
    import json
    import tempfile

    from chalicelib.api.crud import UuidRequest
    from chalicelib.api.operation import Operation
    from chalicelib.db.models import Account, ApiJob
    from chalicelib.runtime.bootstrap import prepare_database
    from chalicelib.runtime.embedded import EmbeddedRuntime
    from chalicelib.settings import Settings

    noop = Operation("NoOp", "PUT", "/noop/{uuid}", UuidRequest, lambda ctx, r: None, "no-op",
                     asynchronous=True)
    with tempfile.TemporaryDirectory() as workdir:
        settings = Settings.from_env({"AERIE_DB_URL": f"sqlite:///{workdir}/ops.db",
                                      "AERIE_VAR_DIR": workdir,
                                      "AERIE_JOB_WORKERS": str(workers)})
        runtime = EmbeddedRuntime(settings, lookup=lambda name: noop)
        prepare_database(runtime.db, "bench-password")
        with runtime.db.session() as session:
            admin = session.query(Account).filter_by(name="admin").one().uuid
        started = time.perf_counter()
        uuids = []
        for n in range(jobs):
            signature = f"vm:{n % signatures}"
            with runtime.db.session() as session:
                job = ApiJob(api_name="NoOp", account_uuid=admin, signature=signature,
                             request=json.dumps({"uuid": f"{n:032x}"}))
                session.add(job)
                session.flush()
                uuids.append(job.uuid)
            runtime.jobs.submit(job.uuid, signature, 1)
        while True:
            with runtime.db.session() as session:
                left = session.query(ApiJob).filter(
                    ApiJob.state.in_(("Waiting", "Running"))).count()
            if not left:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        runtime.close()
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=200_000)
    parser.add_argument("--signatures", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    args = parser.parse_args()
    rate = dispatch_rate(args.operations, args.signatures, args.workers)
    latencies = hop_latency(args.samples, args.workers)
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    print(f"embedded operation queue, {args.workers} workers")
    print(f"  dispatch: {rate:,.0f} no-op operations/s over {args.signatures:,} signatures "
          f"({args.operations:,} operations)")
    durable = durable_rate(args.jobs, args.signatures, args.workers)
    print(f"  durable jobs (row committed, then queued and run; SQLite): {durable:,.0f}/s "
          f"({args.jobs:,} jobs)")
    print(f"  queue hop added latency: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
          f"({args.samples:,} samples)")


if __name__ == "__main__":
    main()
