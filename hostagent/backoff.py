"""Exponential backoff with jitter for reconnecting: 0.5 s, 1 s, 2 s, ... up to 30 s."""
from __future__ import annotations

import random

INITIAL_SECONDS = 0.5
MAX_SECONDS = 30.0
JITTER = 0.25  # each delay moves by up to this fraction either way, so hosts spread out


class Backoff:
    def __init__(self, initial: float = INITIAL_SECONDS, maximum: float = MAX_SECONDS,
                 jitter: float = JITTER, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng  # None: the random module's shared generator (cheap for many agents)
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        spread = (self._rng or random).uniform(-self.jitter, self.jitter)
        return max(self.initial, min(self.maximum, base * (1 + spread)))

    def reset(self) -> None:
        self.failures = 0
