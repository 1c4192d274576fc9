"""The stores of one process under its state directory, opened, restored and closed with
the input partitions it owns: ``processor.runtime.state.StateStores`` on RocksDB and
Kafka changelogs.

Opening a partition: read its checkpoint, take the changelog's offsets, decide where to
restore from (``restore_plan``), remove the checkpoint, wipe the local copy if it is not
to be trusted, open it and read the changelog up to its end. Closing cleanly: flush, then
write a checkpoint at the changelog's end offset, so the next open reads only the tail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from processor.adapters.changelog import ChangelogReader, Restorable
from processor.adapters.state_store import (
    Checkpoint,
    RocksDBStore,
    StoreMemory,
    StoreOptions,
    read_checkpoint,
    remove_checkpoint,
    store_directory,
    wipe,
    write_checkpoint,
)
from processor.core.errors import ConfigError, FatalError
from processor.core.offsets import TopicPartition
from processor.runtime.state import (
    Restored,
    RestoreProgress,
    StoreSpec,
    restore_plan,
)

log = logging.getLogger(__name__)

StoreKey = tuple[str, int]  # (store name, partition)


class StateDirectory:
    """``StateStores`` for the store partitions of one process.

    ``checkpoint_max_age``: a checkpoint older than this is not trusted (the store is
    wiped and restored in full); keep it below the changelogs' ``delete.retention.ms``
    (Kafka's default: one day), past which compaction may have dropped tombstones that
    the local copy never saw.
    """

    def __init__(self, root: Path, specs: Sequence[StoreSpec], reader: ChangelogReader, *,
                 memory: StoreMemory | None = None, checkpoint_max_age: float = 12 * 3600.0,
                 wall: Callable[[], float] = time.time) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"store names must be unique: {names}")
        self._root = root
        self._specs = list(specs)
        self._reader = reader
        self._options = StoreOptions(memory or StoreMemory())
        self._max_age = checkpoint_max_age
        self._wall = wall
        self._open: dict[StoreKey, tuple[StoreSpec, RocksDBStore]] = {}

    def open(self, tps: Sequence[TopicPartition]) -> list[Restored]:
        wanted = [(spec, partition) for topic, partition in tps for spec in self._specs
                  if spec.input_topic == topic and (spec.name, partition) not in self._open]
        return self._restore(wanted, trust_checkpoints=True)

    def store(self, name: str, partition: int) -> RocksDBStore:
        return self._open[(name, partition)][1]

    def close(self, tps: Sequence[TopicPartition], *, clean: bool) -> None:
        """Close the stores of ``tps``. ``clean`` only once every change made to them is
        in the changelog: exactly-once, after the last transaction committed;
        at-least-once, after the producer was flushed. A checkpoint is then written at
        the changelog's end offset, or below it while the markers of that last transaction
        are still on their way: reading a few records again on the next open is harmless.
        """
        wanted = set(tps)
        keys = [key for key, (spec, _) in self._open.items()
                if (spec.input_topic, key[1]) in wanted]
        closing = [self._open.pop(key) for key in keys]
        try:
            if clean and closing:
                self._checkpoint(closing)
        finally:
            for _, store in closing:
                store.close()

    def _checkpoint(self, closing: list[tuple[StoreSpec, RocksDBStore]]) -> None:
        for _, store in closing:
            store.flush()
        try:
            ends = self._reader.ends([(spec.changelog, store.partition)
                                      for spec, store in closing])
        except FatalError as error:
            # Not worth failing a clean close for: the next open restores in full.
            log.warning("no checkpoint written, the end offsets are unknown: %s", error)
            return
        now = self._wall()
        for spec, store in closing:
            _, end = ends[(spec.changelog, store.partition)]
            write_checkpoint(store.directory,
                             Checkpoint(spec.changelog, store.partition, end, now))

    def reset(self, tps: Sequence[TopicPartition]) -> list[Restored]:
        wanted = [(spec, partition) for topic, partition in tps for spec in self._specs
                  if spec.input_topic == topic]
        self.close(tps, clean=False)
        return self._restore(wanted, trust_checkpoints=False)

    def close_all(self, *, clean: bool) -> None:
        tps = sorted({(spec.input_topic, key[1]) for key, (spec, _) in self._open.items()})
        self.close(tps, clean=clean)

    def cache_usage(self) -> int:
        """Bytes in the shared block cache now (blocks and memtables of every store)."""
        return self._options.usage()

    def _restore(self, wanted: list[tuple[StoreSpec, int]], *,
                 trust_checkpoints: bool) -> list[Restored]:
        if not wanted:
            return []
        ends = self._reader.ends([(spec.changelog, partition) for spec, partition in wanted])
        work: list[tuple[RestoreProgress, str, Restorable]] = []
        for spec, partition in wanted:
            directory = store_directory(self._root, spec.name, partition)
            low, end = ends[(spec.changelog, partition)]
            found = read_checkpoint(directory) if trust_checkpoints else None
            if found is not None and (found.changelog, found.partition) != (spec.changelog,
                                                                          partition):
                found = None  # written for another changelog: the configuration changed
            plan = restore_plan(None if found is None else found.offset, low, end,
                                age=0.0 if found is None else self._wall() - found.written_at,
                                max_age=self._max_age)
            remove_checkpoint(directory)
            if plan.wipe:
                wipe(directory)
            store = RocksDBStore(spec.name, partition, spec.changelog, directory,
                                 self._options)
            self._open[(spec.name, partition)] = (spec, store)
            work.append((RestoreProgress(spec.name, partition, plan.start, end, plan.wipe,
                                         plan.why), spec.changelog, store))
        try:
            restored = self._reader.restore(work)
        except BaseException:
            # Half-restored stores must never be closed cleanly (that would checkpoint
            # them): they are closed now, without one.
            for spec, partition in wanted:
                _, store = self._open.pop((spec.name, partition))
                store.close()
            raise
        for result in restored:
            log.info("restored store %s[%d]: %d records from offset %d to %d in %.2fs (%s)",
                     result.store, result.partition, result.records, result.start,
                     result.end, result.seconds, result.why)
        return restored
