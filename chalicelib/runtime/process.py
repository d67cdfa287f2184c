"""What both of ``aerie up``'s processes set up for themselves."""
from __future__ import annotations

import gc
import logging
import os
import sys

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


def own_cpu(process: str, affinity: str) -> int | None:
    """Keep this process on one CPU of those it may use (``affinity`` "auto", two or more
    of them): the engine on the first, the API process on the second. A process runs
    Python on one core at a time anyway, and its threads hand the GIL and their locks to
    each other all the time; on one CPU each hand-over is a local switch, not a wake-up of
    the other CPU (measured: 1,000 VMs created with about 20 % less CPU). Returns the CPU,
    or None when the process is left to the scheduler."""
    if affinity != "auto" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    cpu = cpus[0] if process == "engine" else cpus[1]
    os.sched_setaffinity(0, {cpu})
    return cpu
