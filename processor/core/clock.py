"""Time as the core sees it: injected, so TTLs, limits and backoff are tested without sleeping."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines, TTLs)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (timestamps that leave the process)."""
        ...
