"""What a queue is given: an operation's id, its signature and level, and how to run it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Release = Callable[[], None]


@dataclass(frozen=True)
class Ticket:
    id: str  # unique per operation: a second ticket with the same id is a duplicate
    signature: str  # vm:<uuid>, host:<uuid>, ...
    level: int  # at most this many operations of the signature run at once
    # Runs the operation. It calls ``release`` when the operation has truly ended, which may
    # be after it returns (a flow waiting on a host agent); the queue then starts the next.
    run: Callable[[Release], None]
