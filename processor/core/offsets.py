"""Offset bookkeeping: what may be committed, per partition, without skipping a gap.

Records of one partition are tracked in the order they were consumed. Work on
them may finish in any order (lookups take different times), but the
committable position only moves over a contiguous run of finished records:
committing offset N+1 promises that every record up to N is accounted for.

A ``Slot`` is one consumed record's place in its partition. The pipeline marks
it ``done`` when its output or dead letter is confirmed by the broker (or when
it needed no output at all); ``PartitionLedger.advance`` then moves the
committable position over every leading done slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

TopicPartition = tuple[str, int]
P = TypeVar("P")


class Slot(Generic[P]):
    """One consumed record's place in its partition's ledger."""

    __slots__ = ("done", "offset", "payload")

    def __init__(self, offset: int, payload: P | None = None) -> None:
        self.offset = offset
        self.done = False
        # What the pipeline needs to finish this record (its pending work, or its output).
        self.payload = payload

    def __repr__(self) -> str:
        return f"Slot({self.offset}, done={self.done})"


class PartitionLedger(Generic[P]):
    """The slots of one partition, oldest first."""

    __slots__ = ("_slots", "position")

    def __init__(self) -> None:
        self._slots: deque[Slot[P]] = deque()
        # The next offset to commit (one past the last accounted-for record), or
        # None while nothing has been accounted for since the partition was assigned.
        self.position: int | None = None

    def track(self, offset: int, payload: P | None = None) -> Slot[P]:
        """Register a newly consumed record; offsets must arrive in increasing order."""
        if self._slots and offset <= self._slots[-1].offset:
            raise ValueError(f"offset {offset} after {self._slots[-1].offset}: out of order")
        slot: Slot[P] = Slot(offset, payload)
        self._slots.append(slot)
        return slot

    def advance(self) -> bool:
        """Move ``position`` over leading done slots; True when it moved."""
        slots = self._slots
        moved = False
        while slots and slots[0].done:
            self.position = slots.popleft().offset + 1
            moved = True
        return moved

    def take_leading(self, ready: Callable[[Slot[P]], bool]) -> list[Slot[P]]:
        """Pop the leading slots for which ``ready(slot)`` holds (used by transactions)."""
        taken: list[Slot[P]] = []
        slots = self._slots
        while slots and ready(slots[0]):
            taken.append(slots.popleft())
        if taken:
            self.position = taken[-1].offset + 1
        return taken

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Slot[P]]:
        return iter(self._slots)


class OffsetLedger(Generic[P]):
    """Ledgers of every partition this instance owns."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionLedger[P]] = {}

    def partition(self, tp: TopicPartition) -> PartitionLedger[P]:
        ledger = self._partitions.get(tp)
        if ledger is None:
            ledger = self._partitions[tp] = PartitionLedger[P]()
        return ledger

    def drop(self, tp: TopicPartition) -> PartitionLedger[P] | None:
        """Forget a partition (revoked or rewound); returns its ledger for a last look."""
        return self._partitions.pop(tp, None)

    def advance(self) -> dict[TopicPartition, int]:
        """Advance every partition; the positions that moved, ready to store or commit."""
        return {tp: lg.position for tp, lg in self._partitions.items() if lg.advance() and
                lg.position is not None}

    def positions(self) -> dict[TopicPartition, int]:
        """Every partition's committable position (those with one)."""
        return {tp: lg.position for tp, lg in self._partitions.items() if lg.position is not None}

    def outstanding(self) -> int:
        """Records consumed and not yet accounted for, over all partitions."""
        return sum(len(lg) for lg in self._partitions.values())

    def take_done(self) -> tuple[list[Slot[P]], dict[TopicPartition, int]]:
        """Transactional: the leading done slots of every partition, taken out, and the
        positions they reach."""
        taken: list[Slot[P]] = []
        positions: dict[TopicPartition, int] = {}
        for tp, ledger in self._partitions.items():
            leading = ledger.take_leading(_is_done)
            if leading:
                taken += leading
                positions[tp] = leading[-1].offset + 1
        return taken, positions

    def unfinished(self, tps: list[TopicPartition] | None = None) -> int:
        """Slots (of ``tps``, or of every partition) not done yet."""
        return sum(sum(1 for slot in ledger if not slot.done)
                   for tp, ledger in self._partitions.items() if tps is None or tp in tps)

    def items(self) -> Iterator[tuple[TopicPartition, PartitionLedger[P]]]:
        return iter(list(self._partitions.items()))

    def __contains__(self, tp: object) -> bool:
        return tp in self._partitions


def _is_done(slot: Slot[P]) -> bool:
    return slot.done
