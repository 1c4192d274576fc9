"""Conversions grouped per destination account into batches, flushed on size or linger.

A conversion joins the open batch of its ``Account`` (one pixel, one Google customer and
action): a request may only carry one account's events. A batch goes out when it is
full (the destination's batch size) or when its first conversion has waited ``linger``
seconds, whichever comes first, so a trickle is sent within ``linger`` and a backlog in
full batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor.core.clock import Clock
from processor.core.conversions.record import Conversion
from processor.core.conversions.sending import Account, Destination


@dataclass(eq=False, slots=True)
class Item:
    """One conversion for one destination; ``ticket`` is the pipeline's handle on it."""

    conversion: Conversion
    account: Account
    payload: dict[str, Any]
    keys: tuple[str, ...]
    ticket: Any = None

    @property
    def destination(self) -> Destination:
        return self.account.destination


@dataclass(eq=False, slots=True)
class Batch:
    """Items for one account, sent in one request (or split when that is refused)."""

    account: Account
    items: list[Item]
    opened: float = 0.0
    attempts: int = 0
    failing_since: float | None = None  # monotonic: when its transient failures began


class Batcher:
    def __init__(self, sizes: Mapping[Destination, int], linger: float, clock: Clock) -> None:
        if any(size < 1 for size in sizes.values()):
            raise ValueError("batch sizes must be >= 1")
        self._sizes = dict(sizes)
        self._linger = linger
        self._clock = clock
        self._open: dict[Account, Batch] = {}

    def add(self, item: Item) -> Batch | None:
        """Put ``item`` in its account's batch; the batch when that made it full."""
        account = item.account
        batch = self._open.get(account)
        if batch is None:
            batch = self._open[account] = Batch(account, [], self._clock.monotonic())
        batch.items.append(item)
        if len(batch.items) >= self._sizes[account.destination]:
            del self._open[account]
            return batch
        return None

    def due(self) -> list[Batch]:
        """Batches whose first item has waited ``linger``: taken out."""
        now = self._clock.monotonic()
        ready = [a for a, b in self._open.items() if now - b.opened >= self._linger]
        return [self._open.pop(account) for account in ready]

    def take_all(self) -> list[Batch]:
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def waiting(self) -> dict[Destination, int]:
        counts: dict[Destination, int] = {}
        for account, batch in self._open.items():
            counts[account.destination] = counts.get(account.destination, 0) + len(batch.items)
        return counts

    def __bool__(self) -> bool:
        return bool(self._open)
