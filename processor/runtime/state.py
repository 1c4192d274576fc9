"""Keyed state as a stage sees it: one store per (store, input partition), each backed by
a compacted changelog topic whose partition p holds the changes of the store of input p.

The changelog is the source of truth; the local store (RocksDB, in
``processor.adapters.state_store``) is a cache of it that can always be rebuilt. So:

* a write returns the changelog record that makes it durable, and the *stage*
  produces it: exactly-once, in the transaction of the outputs and offsets it goes
  with; at-least-once, confirmed before the input offset past it is stored;
* before a partition is processed its stores are restored from the changelog,
  from the local checkpoint when there is a clean one, else from the beginning;
* a checkpoint is written only at a clean close (after the final commit) and is
  removed as soon as a store is opened for writing: a crash leaves none, so the
  next start wipes the local copy, which may hold writes of aborted transactions
  or lack writes lost with the memtables.

This module is the pure part: the Protocols the stages call and the bookkeeping
(where a restore starts, how far it has come). No I/O library is imported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from processor.core.offsets import TopicPartition
from processor.runtime.ports import Output


@dataclass(frozen=True)
class StoreSpec:
    """One store: its name (the directory under the state dir), the changelog that backs
    it and the input topic it is co-partitioned with (its partition p restores from
    changelog partition p)."""

    name: str
    changelog: str
    input_topic: str


class KeyValueStore(Protocol):
    """One store partition: bytes keys to bytes values, ordered by key.

    ``put`` and ``delete`` change the local store at once and return the changelog
    record the stage must produce for the change to survive (a delete is a tombstone).
    """

    name: str
    partition: int

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> Output: ...
    def delete(self, key: bytes) -> Output: ...
    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix`` (all of them for ``b""``), in key order."""
    def approximate_count(self) -> int:
        """RocksDB's estimate of the number of keys: cheap, for the ``state_records`` gauge."""


class Restored(NamedTuple):
    """What restoring one store partition did (for ``state_records`` and ``restore_seconds``)."""

    store: str
    partition: int
    records: int  # changelog records applied
    seconds: float
    start: int  # the first changelog offset read
    end: int  # the changelog offset restored up to (exclusive)
    full: bool  # from the beginning, the local copy wiped (no usable checkpoint)
    why: str  # why it started where it did, for the log


class StateStores(Protocol):
    """The stores of one process, opened and closed with the partitions it owns.

    The stage calls ``open`` from its assignment callback (restoring blocks until the
    partitions are up to date), ``close(clean=True)`` from its revocation callback after
    the final commit, ``close(clean=False)`` when partitions are lost or the stage
    fails, and ``reset`` after an aborted transaction.
    """

    def open(self, tps: Sequence[TopicPartition]) -> list[Restored]:
        """Open and restore the stores of the input partitions ``tps`` (others ignored)."""
    def store(self, name: str, partition: int) -> KeyValueStore:
        """An open store partition; ``KeyError`` when it is not open here."""
    def close(self, tps: Sequence[TopicPartition], *, clean: bool) -> None:
        """Close the stores of ``tps``; ``clean`` (every change committed) keeps a checkpoint."""
    def reset(self, tps: Sequence[TopicPartition]) -> list[Restored]:
        """Wipe and restore from the beginning: the local copies may hold aborted writes."""
    def close_all(self, *, clean: bool) -> None: ...


# --- where a restore starts --------------------------------------------------------------


class RestorePlan(NamedTuple):
    start: int  # the changelog offset to read from
    wipe: bool  # drop the local copy first
    why: str


def restore_plan(checkpoint: int | None, low: int, end: int, *, age: float = 0.0,
                 max_age: float = float("inf")) -> RestorePlan:
    """Where to restore a store partition from, given its local checkpoint (``None`` when
    there is none), the changelog partition's low watermark and end offset, and the
    checkpoint's age in seconds.

    A checkpoint is trusted only inside ``[low, end]``: below ``low`` the records between
    are gone, above ``end`` the changelog no longer holds what the local copy was built
    from (recreated or truncated). One older than ``max_age`` is not trusted either: once
    compaction has dropped a tombstone (``delete.retention.ms``) the local copy would keep
    a key the changelog deleted.
    """
    if checkpoint is None:
        return RestorePlan(low, True, "no clean checkpoint")
    if checkpoint > end:
        return RestorePlan(low, True, f"checkpoint {checkpoint} is past the changelog's end {end}")
    if checkpoint < low:
        return RestorePlan(low, True, f"checkpoint {checkpoint} is below the changelog's start "
                                      f"{low}")
    if age > max_age:
        return RestorePlan(low, True, f"checkpoint is {age:.0f}s old, over {max_age:.0f}s")
    return RestorePlan(checkpoint, False, f"from checkpoint {checkpoint}")


# --- how far a restore has come ----------------------------------------------------------


@dataclass
class RestoreProgress:
    """One changelog partition being read from ``start`` up to ``end`` (exclusive)."""

    store: str
    partition: int
    start: int
    end: int
    full: bool
    why: str
    position: int = field(init=False)
    records: int = 0

    def __post_init__(self) -> None:
        self.position = self.start

    @property
    def done(self) -> bool:
        return self.position >= self.end

    def applied(self, records: int, next_offset: int) -> None:
        """``records`` applied, up to ``next_offset`` (which may pass the end: records
        committed since the end was taken are applied too)."""
        self.records += records
        self.position = max(self.position, next_offset)
        self.end = max(self.end, self.position)

    def extend(self, end: int) -> None:
        """More was committed since the end was taken (an open transaction ended)."""
        self.end = max(self.end, end)

    def reached(self, offset: int) -> None:
        """The reader is at ``offset`` with nothing before it left to deliver (end of the
        partition, or past a transaction marker or aborted records)."""
        self.position = max(self.position, offset)
        self.end = max(self.end, self.position)

    def result(self, seconds: float) -> Restored:
        return Restored(self.store, self.partition, self.records, seconds, self.start,
                        self.end, self.full, self.why)


def changelog_record(changelog: str, partition: int, key: bytes,
                     value: bytes | None) -> Output:
    """The record that makes one store change durable; ``None`` is a tombstone."""
    return Output(changelog, key, value, None, partition)
