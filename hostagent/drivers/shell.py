"""Running host tools (qemu-img, ip): one function, swappable in tests."""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

from hostagent.drivers.base import DriverError

Runner = Callable[[Sequence[str]], str]

TIMEOUT_SECONDS = 120


class CommandFailed(DriverError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {returncode}"
        super().__init__(f"{argv[0]} failed: {detail}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def run(argv: Sequence[str]) -> str:
    """Run a tool and return its stdout; any failure (missing tool, exit code, timeout)
    becomes a CommandFailed naming the tool."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              timeout=TIMEOUT_SECONDS)
    except FileNotFoundError as exc:
        raise CommandFailed(argv, 127, f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, -1, f"timed out after {TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr)
    return done.stdout
