"""Which dead letters a replay moves, and what it counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplayFilter:
    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def accepts(self, reason: str, dead_lettered_ms: int) -> bool:
        if self.reasons and reason not in self.reasons:
            return False
        if self.since_ms is not None and dead_lettered_ms < self.since_ms:
            return False
        return self.until_ms is None or dead_lettered_ms < self.until_ms


@dataclass
class ReplayResult:
    read: int = 0
    moved: int = 0
    passed_over: int = 0
    incomplete: int = 0  # dead letters that left out part of the original: not replayable
