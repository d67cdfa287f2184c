"""Wall-clock time of each phase of an end-to-end test, printed as its figures."""
from __future__ import annotations

import time


class Phases:
    """Wall-clock time of each phase, printed at the end of a test."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times.append((name, now - self._last))
        self._last = now

    def print(self, title: str) -> None:
        total = sum(seconds for _, seconds in self.times)
        print(f"\n{title} ({total:.2f}s in all):")
        for name, seconds in self.times:
            print(f"  {name:<40} {seconds:6.2f}s")
