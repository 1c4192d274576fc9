"""The RocksDB store of one partition and its checkpoint file, on a temporary disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.adapters.state_store import (
    Checkpoint,
    RocksDBStore,
    StoreMemory,
    StoreOptions,
    read_checkpoint,
    remove_checkpoint,
    wipe,
    write_checkpoint,
)
from processor.core.errors import FatalError
from processor.runtime.ports import Output


@pytest.fixture
def options() -> StoreOptions:
    return StoreOptions(StoreMemory(block_cache=8 * 2**20, write_buffers=4 * 2**20,
                                    write_buffer=2**20))


@pytest.fixture
def store(tmp_path: Path, options: StoreOptions) -> Iterator[RocksDBStore]:
    opened = RocksDBStore("clicks", 3, "conv.anon-state", tmp_path / "clicks" / "3", options)
    yield opened
    opened.close()


def test_writes_return_the_changelog_record_for_the_stores_partition(store: RocksDBStore) -> None:
    assert store.put(b"anon-1", b"gclid") == Output("conv.anon-state", b"anon-1", b"gclid",
                                                     None, 3)
    assert store.get(b"anon-1") == b"gclid"
    assert store.delete(b"anon-1") == Output("conv.anon-state", b"anon-1", None, None, 3)
    assert store.get(b"anon-1") is None


def test_items_by_prefix_and_in_full_in_key_order(store: RocksDBStore) -> None:
    for key in (b"b/2", b"a/1", b"b/1", b"c", b"b"):
        store.put(key, key.upper())
    assert [k for k, _ in store.items(b"b/")] == [b"b/1", b"b/2"]
    assert [k for k, _ in store.items()] == [b"a/1", b"b", b"b/1", b"b/2", b"c"]
    assert list(store.items(b"z")) == []
    assert dict(store.items())[b"c"] == b"C"


def test_apply_writes_a_batch_and_none_deletes(store: RocksDBStore) -> None:
    store.put(b"gone", b"1")
    store.apply([(b"kept", b"2"), (b"gone", None), (b"kept", b"3")])
    assert dict(store.items()) == {b"kept": b"3"}


def test_contents_survive_a_close_and_reopen(tmp_path: Path, options: StoreOptions) -> None:
    directory = tmp_path / "persons" / "0"
    first = RocksDBStore("persons", 0, "log", directory, options)
    first.put(b"k", b"v")
    first.flush()
    first.close()
    again = RocksDBStore("persons", 0, "log", directory, options)
    assert again.get(b"k") == b"v"
    again.close()
    wipe(directory)
    wiped = RocksDBStore("persons", 0, "log", directory, options)
    assert wiped.get(b"k") is None
    wiped.close()


def test_a_second_opener_of_the_same_directory_is_refused(tmp_path: Path,
                                                          options: StoreOptions) -> None:
    first = RocksDBStore("persons", 0, "log", tmp_path / "p" / "0", options)
    with pytest.raises(FatalError, match="same state directory"):
        RocksDBStore("persons", 0, "log", tmp_path / "p" / "0", options)
    first.close()


# --- the checkpoint file -----------------------------------------------------------------


def test_checkpoint_round_trip_and_removal(tmp_path: Path) -> None:
    assert read_checkpoint(tmp_path) is None
    checkpoint = Checkpoint("conv.person-state", 4, 1234, 1_763_900_000.5)
    write_checkpoint(tmp_path, checkpoint)
    assert read_checkpoint(tmp_path) == checkpoint
    remove_checkpoint(tmp_path)
    assert read_checkpoint(tmp_path) is None
    remove_checkpoint(tmp_path)  # nothing to remove is fine


@pytest.mark.parametrize("text", ["", "{", "[]", '{"offset": 3}', '{"changelog": "x", '
                                  '"partition": 0, "offset": "many", "written_at": 0}'])
def test_an_unreadable_checkpoint_counts_as_none(tmp_path: Path, text: str) -> None:
    (tmp_path / "checkpoint.json").write_text(text)
    assert read_checkpoint(tmp_path) is None
