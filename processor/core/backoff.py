"""Exponential backoff with jitter, so that retries of many records do not arrive in waves."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * (2.0 ** max(0, min(attempt - 1, 32))))
        # Never less than half the ceiling: pure "full jitter" can retry at once,
        # which is what a struggling provider needs least.
        return ceiling / 2 + self.rng.random() * ceiling / 2
