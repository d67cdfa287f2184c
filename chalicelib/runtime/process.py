"""What both of ``aerie up``'s processes set up for themselves."""
from __future__ import annotations

import gc
import logging
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
