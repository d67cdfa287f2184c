"""Starting `aerie up` for a benchmark: a real process on a loopback port, its log in the
benchmark's work directory; the caller stops it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

START_SECONDS = 60


def start_aerie(port: int, workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    """``env`` adds to the process's environment (AERIE_DB_URL, AERIE_ADMIN_PASSWORD …).
    Exits the benchmark with the server's log if it does not start listening."""
    aerie = Path(sys.executable).with_name("aerie")
    log_path = workdir / "aerie.log"
    process = subprocess.Popen(
        [str(aerie), "up"], stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "AERIE_LISTEN": f"127.0.0.1:{port}", "AERIE_VAR_DIR": str(workdir),
             **env})
    deadline = time.monotonic() + START_SECONDS
    while "listening on" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(log_path.read_text())
        time.sleep(0.1)
    return process
