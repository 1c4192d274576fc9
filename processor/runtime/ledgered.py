"""The part of a ``Pipeline`` that is its offset ledger's: the same for every stage."""

from __future__ import annotations

from typing import Generic, TypeVar

from processor.core.offsets import OffsetLedger, TopicPartition

P = TypeVar("P")


class Ledgered(Generic[P]):
    """A pipeline's bookkeeping of consumed records, per partition (``self._ledger``)."""

    def __init__(self) -> None:
        self._ledger = OffsetLedger[P]()

    def advance(self) -> dict[TopicPartition, int]:
        """At-least-once: positions that moved over finished records since the last call."""
        return self._ledger.advance()

    def positions(self) -> dict[TopicPartition, int]:
        return self._ledger.positions()

    def outstanding(self) -> int:
        """Records consumed and not yet accounted for."""
        return self._ledger.outstanding()

    def unfinished(self, tps: list[TopicPartition] | None = None) -> int:
        """Records (of ``tps``, or of all partitions) whose slot is not done yet."""
        return self._ledger.unfinished(tps)
