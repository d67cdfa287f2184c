"""An exclusive lock held on a file, across threads and processes (``flock``), with a
bounded wait: two agents on one machine (or one agent and its restarted self) never work on
the same cached image or DHCP server at once."""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hostagent.drivers.base import DriverError

POLL_SECONDS = 0.05


@contextmanager
def exclusive_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold ``path``'s lock for the block; DriverError naming ``what`` after ``timeout``
    seconds of waiting. The lock file stays: removing it would let a waiter lock a file
    that no longer has a name while a newcomer locks its replacement."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DriverError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DriverError(f"{what} is busy: waited {timeout:.0f} s for "
                                      f"{path}") from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing releases the lock
