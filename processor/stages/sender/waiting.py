"""The delay topic's waiting line: records not yet due, per partition, in their order.

A partition with a record waiting is held (not fetched) until its last waiting record
has gone, so a wait of hours costs no memory beyond what was fetched before the hold;
records leave in partition order, each once it and every one before it are due.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from processor.core.offsets import TopicPartition
from processor.stages.sender.ports import PartitionGate

T = TypeVar("T")


class WaitingLine(Generic[T]):
    def __init__(self, gate: PartitionGate, due_at: Callable[[T], int]) -> None:
        self._gate = gate
        self._due_at = due_at  # ms
        self._lines: dict[TopicPartition, deque[T]] = {}
        self._count = 0

    def waits(self, tp: TopicPartition) -> bool:
        """Whether something of ``tp`` waits: then everything after it waits too."""
        return tp in self._lines

    def add(self, tp: TopicPartition, item: T) -> None:
        line = self._lines.get(tp)
        if line is None:
            line = self._lines[tp] = deque()
            self._gate.hold([tp])
        line.append(item)
        self._count += 1

    def due(self, now_ms: int) -> list[T]:
        """What may go now, in order; emptied partitions are fetched again."""
        leaving: list[T] = []
        for tp, line in list(self._lines.items()):
            while line and self._due_at(line[0]) <= now_ms:
                leaving.append(line.popleft())
            if not line:
                del self._lines[tp]
                self._gate.release([tp])
        self._count -= len(leaving)
        return leaving

    def drop(self, tps: list[TopicPartition]) -> None:
        """Forget them (the partition's next owner reads them again), and release them."""
        for tp in tps:
            self._count -= len(self._lines.pop(tp, ()))
        self._gate.release(tps)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return bool(self._lines)
