"""Per-key ordering: outputs of one key leave in the order their inputs arrived.

Lookups finish in any order. Records of *different* keys are released as soon
as they are ready, but a record waits while an earlier record with the same
key (in the same partition) is still unresolved. Only keys with something
waiting occupy memory, so the sequencer is bounded by the in-flight window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("item", "ready")

    def __init__(self, item: T) -> None:
        self.item = item
        self.ready = False


class Ticket(Generic[T]):
    """A place in one key's queue; ``KeySequencer.ready`` takes it back."""

    __slots__ = ("entry", "key")

    def __init__(self, key: Hashable, entry: _Entry[T]) -> None:
        self.key = key
        self.entry = entry


class KeySequencer(Generic[T]):
    """Releases items in arrival order per key, whatever order they become ready in."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[_Entry[T]]] = {}

    def busy(self, key: Hashable) -> bool:
        """True while an earlier item of ``key`` is still waiting."""
        return key in self._queues

    def enter(self, key: Hashable, item: T) -> Ticket[T]:
        """Take a place in ``key``'s queue before the item's work starts."""
        entry: _Entry[T] = _Entry(item)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(entry)
        return Ticket(key, entry)

    def ready(self, ticket: Ticket[T]) -> list[T]:
        """Mark an item ready; returns the items that may now go out, in order."""
        ticket.entry.ready = True
        queue = self._queues.get(ticket.key)
        released: list[T] = []
        if queue is None:
            return released
        while queue and queue[0].ready:
            released.append(queue.popleft().item)
        if not queue:
            del self._queues[ticket.key]
        return released

    def drop(self, predicate: Callable[[Any], bool]) -> None:
        """Forget the queues of every key for which ``predicate(key)`` holds."""
        for key in [k for k in self._queues if predicate(k)]:
            del self._queues[key]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
