"""What both of ``aerie up``'s processes set up for themselves."""
from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass

SWITCH_INTERVAL = 0.0005  # seconds a thread may keep the GIL while others wait for it


def configure_logging(process: str) -> None:
    """Both processes write to the same output: each line says which one wrote it."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{process}] %(name)s %(message)s")


def tune_interpreter() -> None:
    """For a long-lived server process, once it has loaded what it runs."""
    # Everything loaded so far lives as long as the process: keep it out of GC passes.
    gc.collect()
    gc.freeze()
    # Transactions take turns on one lock (SQLite) and let go of the GIL at each statement;
    # at the default 5 ms switch interval another thread (an HTTP request being parsed or
    # rendered) keeps the GIL that long while the lock holder, and everyone queued behind
    # it, waits. Measured with bench/create_vms.py: 300 VMs in 30 s instead of 43 s.
    sys.setswitchinterval(SWITCH_INTERVAL)


@dataclass(frozen=True)
class CpuPlan:
    """Which CPU each of ``aerie up``'s processes keeps to."""

    api: int
    engine: int


def plan_cpus(affinity: str) -> CpuPlan | None:
    """With ``affinity`` "auto" and two or more CPUs this process may use: the engine on the
    last, the API process on the one before it. A process runs Python on one core at a time
    anyway, and its threads hand the GIL and their locks to each other all the time; on one
    CPU each hand-over is a local switch, not a wake-up of the other CPU. The engine, the
    busier of the two, keeps off the first CPU, where the kernel tends to do its own work
    (measured on 2 CPUs, 1,000 VMs: 6.2-7.5 s so, 6.7-8.7 s the other way round). None: both
    are left to the scheduler."""
    if affinity != "auto" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return CpuPlan(api=cpus[-2], engine=cpus[-1]) if len(cpus) >= 2 else None


def keep_to_cpu(cpu: int) -> None:
    """Run this process on ``cpu`` only: call it before starting threads (they inherit it,
    as does a process it starts)."""
    os.sched_setaffinity(0, {cpu})
