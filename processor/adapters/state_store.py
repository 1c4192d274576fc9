"""RocksDB (through rocksdict) behind ``processor.runtime.state.KeyValueStore``: one
database per (store, partition) under ``<state dir>/<store>/<partition>/``, plus the
checkpoint file that says up to which changelog offset that database is complete.

Layout of one store partition::

    <state dir>/<store>/<partition>/rocksdb/          the database
    <state dir>/<store>/<partition>/checkpoint.json   only between a clean close and the next open

Memory is bounded per process, not per key (``StoreMemory``): every store of the process
shares one block cache, which holds data, index and filter blocks, and the memtables of
all stores are charged to that same cache by a shared write buffer manager. The number of
people only changes the size of the files on disk.

The write-ahead log is off: the changelog already makes every change durable, and a
database whose process died is wiped and restored anyway (no checkpoint survives a
crash), so the log would only cost a second write of everything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import rocksdict

from processor.core.errors import FatalError
from processor.runtime.ports import Output
from processor.runtime.state import changelog_record

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_CHECKPOINT = "checkpoint.json"
_DATABASE = "rocksdb"


@dataclass(frozen=True)
class StoreMemory:
    """RocksDB's memory for all the stores of one process.

    ``block_cache``: one LRU cache shared by every store, holding data blocks and (so
    that they are bounded too) index and filter blocks. ``write_buffers``: the memtables
    of all stores together, counted inside ``block_cache``; when they reach it the
    largest is flushed. ``write_buffer``: one store's memtable, flushed to a file when
    full (two at most per store: one filling while the other is written).
    ``max_open_files``: per store; each open file keeps a small table reader.
    Peak RSS with these defaults: see ``python -m processor.devkit.bench_state``.
    """

    block_cache: int = 32 * MiB
    write_buffers: int = 8 * MiB
    write_buffer: int = 4 * MiB
    max_open_files: int = 64
    background_jobs: int = 2  # flushes and compactions, shared by all stores


class StoreOptions:
    """The rocksdict options every store of a process opens with (one shared cache)."""

    def __init__(self, memory: StoreMemory = StoreMemory()) -> None:
        self.memory = memory
        self.cache = rocksdict.Cache(memory.block_cache)
        self._buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory.write_buffers, False, self.cache)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_manager(self._buffers)
        options.set_write_buffer_size(memory.write_buffer)
        options.set_max_write_buffer_number(2)
        options.set_max_open_files(memory.max_open_files)
        options.set_max_background_jobs(memory.background_jobs)
        options.set_compression_type(rocksdict.DBCompressionType.lz4())
        options.set_keep_log_file_num(2)  # RocksDB's own LOG files, not data
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)  # ~1% false positives: lookups of absent keys
        options.set_block_based_table_factory(table)
        self.options = options
        self.write = rocksdict.WriteOptions()
        # A property at run time, though rocksdict's stub declares a method.
        self.write.disable_wal = True  # type: ignore[assignment,method-assign]

    def usage(self) -> int:
        """Bytes held in the shared cache now (blocks and memtables)."""
        return self.cache.get_usage()


class RocksDBStore:
    """One store partition; its changes name changelog partition ``partition``."""

    def __init__(self, name: str, partition: int, changelog: str, directory: Path,
                 options: StoreOptions) -> None:
        self.name = name
        self.partition = partition
        self.changelog = changelog
        self.directory = directory
        self._write = options.write
        directory.mkdir(parents=True, exist_ok=True)
        try:
            self._db = rocksdict.Rdict(str(directory / _DATABASE), options.options)
        except Exception as error:  # noqa: BLE001 - rocksdict raises a bare Exception
            raise FatalError(f"could not open the state store at {directory}: {error} (is "
                             "another processor using the same state directory?)") from None
        self._db.set_write_options(options.write)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> Output:
        self._db.put(key, value)
        return changelog_record(self.changelog, self.partition, key, value)

    def delete(self, key: bytes) -> Output:
        self._db.delete(key)
        return changelog_record(self.changelog, self.partition, key, None)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        entries = self._db.items(from_key=prefix) if prefix else self._db.items()
        for key, value in entries:
            # Raw mode: keys are bytes, though the stub allows any key type.
            if not key.startswith(prefix):  # type: ignore[union-attr,arg-type]
                return
            yield key, value  # type: ignore[misc]

    def approximate_count(self) -> int:
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records in one write (``None`` deletes): the restore path."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch, self._write)

    def flush(self) -> None:
        """Write the memtables to files: with the log off, this is what makes a clean
        close's checkpoint true."""
        self._db.flush(True)

    def close(self) -> None:
        self._db.close()


# --- the checkpoint file -------------------------------------------------------------------


class Checkpoint(NamedTuple):
    changelog: str
    partition: int
    offset: int  # the store holds every changelog record before this offset
    written_at: float  # epoch seconds


def read_checkpoint(directory: Path) -> Checkpoint | None:
    """The clean checkpoint of a store partition, or None (missing or unreadable)."""
    path = directory / _CHECKPOINT
    try:
        data = json.loads(path.read_text())
        return Checkpoint(str(data["changelog"]), int(data["partition"]), int(data["offset"]),
                          float(data["written_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring the unreadable checkpoint %s: %s", path, error)
        return None


def write_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    """Atomically (write, fsync, rename, fsync the directory): a torn file must never
    pass for a clean one."""
    path = directory / _CHECKPOINT
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as file:
        json.dump(checkpoint._asdict(), file)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    _sync_directory(directory)


def remove_checkpoint(directory: Path) -> None:
    """Done before a store is opened for writing: from then on only a clean close may
    vouch for it again."""
    path = directory / _CHECKPOINT
    if path.exists():
        path.unlink()
        _sync_directory(directory)


def wipe(directory: Path) -> None:
    """Delete the local copy of a store partition (the changelog rebuilds it)."""
    shutil.rmtree(directory / _DATABASE, ignore_errors=True)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_directory(root: Path, store: str, partition: int) -> Path:
    return root / store / str(partition)

