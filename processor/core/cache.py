"""A bounded least-recently-used cache whose entries expire, on an injected clock.

Lookups cost money, so results are remembered per normalised email: found
records for ``ttl`` seconds, "not found" for its own (shorter) TTL. The number
of entries never exceeds ``max_entries``; the least recently used entry makes
room. Single-threaded by design: only the pipeline's thread touches it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from processor.core.clock import Clock

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, max_entries: int, clock: Clock) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, now: float | None = None) -> V | None:
        """The live value for ``key`` at ``now`` (the clock's monotonic time, read when not
        given), or None (absent or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= (self._clock.monotonic() if now is None else now):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V, ttl: float) -> None:
        """Remember ``value`` for ``ttl`` seconds (a TTL of 0 or less stores nothing)."""
        if ttl <= 0 or self._max == 0:
            return
        entries = self._entries
        entries[key] = (self._clock.monotonic() + ttl, value)
        entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
