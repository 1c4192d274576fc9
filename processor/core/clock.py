"""Time as the core sees it: injected, so TTLs, limits and backoff are tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines, TTLs)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (timestamps that leave the process)."""
        ...


class SystemClock:
    """The real clock: the one ``processor.entrypoints.bootstrap`` gives every part."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
