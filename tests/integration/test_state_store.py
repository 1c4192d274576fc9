"""Stores backed by changelogs on the real broker: what a restore brings back after a
clean close, after kill -9, onto an empty disk, and what it must leave out (tombstoned
keys, aborted transactions); and the start-up checks of the changelog topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from processor.adapters.changelog import ChangelogReader, verify_changelogs
from processor.adapters.kafka import KafkaSink
from processor.adapters.state_directory import StateDirectory
from processor.core.errors import ConfigError
from processor.runtime.ports import Output
from processor.runtime.state import StoreSpec, changelog_record

COMPACT = {"cleanup.policy": "compact"}


@pytest.fixture
def spec(kafka_topics: Callable[..., str]) -> StoreSpec:
    """A store on a 2-partition input with its co-partitioned, compacted changelog."""
    return StoreSpec("clicks", kafka_topics("anon-state", 2, COMPACT),
                     kafka_topics("by-anon", 2))


@contextmanager
def opened(bootstrap: str, root: Path, spec: StoreSpec,
           **reader_options: Any) -> Iterator[StateDirectory]:
    """A StateDirectory at ``root``; closed uncleanly (no checkpoint) unless the test
    closed it itself."""
    reader = ChangelogReader({"bootstrap.servers": bootstrap}, **reader_options)
    directory = StateDirectory(root, [spec], reader)
    try:
        yield directory
    finally:
        directory.close_all(clean=False)
        reader.close()


def produce(bootstrap: str, outputs: Iterable[Output]) -> None:
    """Through the stage's own sink: each record to the partition it names."""
    sink = KafkaSink({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                      "acks": "all"}, {})
    for output in outputs:
        sink.produce(output.topic, output.key, output.value, output.headers, None,
                     output.partition)
    assert sink.flush(30) == 0
    assert sink.refused == []
    sink.close()


def contents(directory: StateDirectory, partition: int) -> dict[bytes, bytes]:
    return dict(directory.store("clicks", partition).items())


def test_changes_restored_onto_an_empty_disk_give_the_same_contents(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    expected: dict[int, dict[bytes, bytes]] = {}
    with opened(kafka_bootstrap, tmp_path / "first", spec) as first:
        first.open([(spec.input_topic, 0), (spec.input_topic, 1)])
        changes = []
        for partition, count in ((0, 200), (1, 300)):
            store = first.store("clicks", partition)
            changes += [store.put(b"p%d-%04d" % (partition, i), b"v%d" % i)
                        for i in range(count)]
            changes += [store.put(b"p%d-%04d" % (partition, i), b"newer")
                        for i in range(0, count, 7)]
            expected[partition] = contents(first, partition)
        produce(kafka_bootstrap, changes)
        first.close_all(clean=True)

    with opened(kafka_bootstrap, tmp_path / "second", spec) as second:
        restored = second.open([(spec.input_topic, 0), (spec.input_topic, 1)])
        assert {r.partition: (r.records, r.full) for r in restored} == {
            0: (200 + 29, True), 1: (300 + 43, True)}
        # Every change went to its store's own changelog partition.
        assert contents(second, 0) == expected[0]
        assert contents(second, 1) == expected[1]
        assert all(r.seconds >= 0 and r.end == r.records for r in restored)


def test_a_clean_close_and_reopen_restores_only_the_tail(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    tp = (spec.input_topic, 0)
    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        directory.open([tp])
        store = directory.store("clicks", 0)
        produce(kafka_bootstrap, [store.put(b"k%03d" % i, b"v") for i in range(100)])
        directory.close([tp], clean=True)
    assert (tmp_path / "clicks" / "0" / "checkpoint.json").exists()
    # Meanwhile the partition's next owner wrote ten more changes.
    produce(kafka_bootstrap, [changelog_record(spec.changelog, 0, b"k%03d" % i, b"later")
                              for i in range(95, 105)])

    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        (restored,) = directory.open([tp])
        assert (restored.full, restored.start, restored.records) == (False, 100, 10)
        assert not (tmp_path / "clicks" / "0" / "checkpoint.json").exists()  # open for writing
        state = contents(directory, 0)
        assert len(state) == 105
        assert state[b"k000"] == b"v"
        assert state[b"k099"] == b"later"


_KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from processor.adapters.changelog import ChangelogReader
    from processor.adapters.kafka import KafkaSink
    from processor.adapters.state_directory import StateDirectory
    from processor.runtime.state import StoreSpec

    bootstrap, root, changelog, input_topic = sys.argv[1:5]
    directory = StateDirectory(Path(root), [StoreSpec("clicks", changelog, input_topic)],
                               ChangelogReader({"bootstrap.servers": bootstrap}))
    directory.open([(input_topic, 0)])
    store = directory.store("clicks", 0)
    sink = KafkaSink({"bootstrap.servers": bootstrap}, {})
    for i in range(50, 60):
        out = store.put(b"k%03d" % i, b"v")
        sink.produce(out.topic, out.key, out.value, None, None, out.partition)
    assert sink.flush(30) == 0
    # A write the changelog never got (an aborted transaction's), already on local disk.
    store.put(b"never-in-the-changelog", b"x")
    store.flush()
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_store_killed_without_a_clean_close_is_wiped_and_restored_in_full(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    tp = (spec.input_topic, 0)
    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        directory.open([tp])
        store = directory.store("clicks", 0)
        produce(kafka_bootstrap, [store.put(b"k%03d" % i, b"v") for i in range(50)])
        directory.close([tp], clean=True)  # a clean checkpoint at 50...

    with subprocess.Popen(  # ...that the next process removes on opening, then dies
            [sys.executable, "-c", _KILLED, kafka_bootstrap, str(tmp_path), spec.changelog,
             spec.input_topic], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) as child:
        assert child.stdout is not None
        ready = child.stdout.readline().strip()
        os.kill(child.pid, signal.SIGKILL)
        _, errors = child.communicate(timeout=30)
    assert ready == "ready", errors
    assert not (tmp_path / "clicks" / "0" / "checkpoint.json").exists()

    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        (restored,) = directory.open([tp])
        assert (restored.full, restored.start, restored.records) == (True, 0, 60)
        assert restored.why == "no clean checkpoint"
        state = contents(directory, 0)
        assert b"never-in-the-changelog" not in state
        assert sorted(state) == [b"k%03d" % i for i in range(60)]


def test_tombstones_delete_on_restore(kafka_bootstrap: str, spec: StoreSpec,
                                      tmp_path: Path) -> None:
    tp = (spec.input_topic, 1)
    with opened(kafka_bootstrap, tmp_path / "first", spec) as first:
        first.open([tp])
        store = first.store("clicks", 1)
        changes = [store.put(key, b"v") for key in (b"a", b"b", b"c")]
        changes.append(store.delete(b"b"))
        assert changes[-1].value is None
        produce(kafka_bootstrap, changes)
        first.close([tp], clean=True)

    with opened(kafka_bootstrap, tmp_path / "empty", spec) as fresh:
        fresh.open([tp])
        assert sorted(contents(fresh, 1)) == [b"a", b"c"]

    # A tombstone written after the checkpoint deletes the key of the local copy too.
    produce(kafka_bootstrap, [changelog_record(spec.changelog, 1, b"c", None)])
    with opened(kafka_bootstrap, tmp_path / "first", spec) as again:
        (restored,) = again.open([tp])
        assert (restored.full, restored.records) == (False, 1)
        assert sorted(contents(again, 1)) == [b"a"]


def _transactional(bootstrap: str) -> KafkaSink:
    return KafkaSink({"bootstrap.servers": bootstrap,
                      "transactional.id": f"state-test-{uuid.uuid4().hex[:8]}"}, {})


def _in_transaction(sink: KafkaSink, outputs: Iterable[Output], *, commit: bool) -> None:
    sink.begin()
    for output in outputs:
        sink.produce(output.topic, output.key, output.value, None, None, output.partition)
    if commit:
        sink.commit_transaction({}, None, 30)
    else:
        assert sink.flush(30) == 0  # in the log, then aborted
        sink.abort(30)


def test_writes_of_aborted_transactions_are_not_restored(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    def put(key: bytes, value: bytes | None) -> Output:
        return changelog_record(spec.changelog, 0, key, value)

    sink = _transactional(kafka_bootstrap)
    _in_transaction(sink, [put(b"x", b"1")], commit=True)
    _in_transaction(sink, [put(b"y", b"aborted"), put(b"x", None)], commit=False)
    _in_transaction(sink, [put(b"z", b"3")], commit=True)
    _in_transaction(sink, [put(b"w", b"aborted")], commit=False)  # the log ends aborted
    sink.close()

    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        started = time.monotonic()
        (restored,) = directory.open([(spec.input_topic, 0)])
        assert time.monotonic() - started < 10  # the end is found past the markers
        assert contents(directory, 0) == {b"x": b"1", b"z": b"3"}
        assert restored.records == 2
        assert restored.end == 9  # 5 records and 4 transaction markers


def test_a_transaction_left_open_is_waited_for_before_the_end_is_taken(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    # The previous owner's last transaction, still being committed when this one starts.
    sink = _transactional(kafka_bootstrap)
    sink.begin()
    sink.produce(spec.changelog, b"last", b"words", None, None, 0)
    assert sink.flush(30) == 0
    committer = threading.Timer(1.5, lambda: sink.commit_transaction({}, None, 30))
    committer.start()
    try:
        with opened(kafka_bootstrap, tmp_path, spec, settle_timeout=30.0) as directory:
            directory.open([(spec.input_topic, 0)])
            assert contents(directory, 0) == {b"last": b"words"}
    finally:
        committer.join()
        sink.close()


def test_reset_drops_local_writes_the_changelog_does_not_have(
        kafka_bootstrap: str, spec: StoreSpec, tmp_path: Path) -> None:
    tp = (spec.input_topic, 0)
    with opened(kafka_bootstrap, tmp_path, spec) as directory:
        directory.open([tp])
        store = directory.store("clicks", 0)
        produce(kafka_bootstrap, [store.put(b"committed", b"1")])
        store.put(b"aborted", b"2")  # its transaction aborted: never in the changelog
        (restored,) = directory.reset([tp])
        assert (restored.full, restored.records) == (True, 1)
        assert contents(directory, 0) == {b"committed": b"1"}


# --- start-up checks ----------------------------------------------------------------------


def test_the_checks_accept_compacted_co_partitioned_changelogs(
        kafka_bootstrap: str, kafka_topics: Callable[..., str]) -> None:
    inputs = kafka_topics("by-person", 3)
    verify_changelogs({"bootstrap.servers": kafka_bootstrap}, {
        kafka_topics("person-state", 3, COMPACT): inputs,
        kafka_topics("audit", 3, {"cleanup.policy": "compact,delete"}): inputs,
    }, timeout=30)


def test_the_checks_refuse_a_changelog_with_another_partition_count(
        kafka_bootstrap: str, kafka_topics: Callable[..., str]) -> None:
    inputs, changelog = kafka_topics("by-person", 3), kafka_topics("person-state", 2, COMPACT)
    with pytest.raises(ConfigError) as refused:
        verify_changelogs({"bootstrap.servers": kafka_bootstrap}, {changelog: inputs}, 30)
    message = str(refused.value)
    assert f"changelog topic '{changelog}' has 2 partitions but its input '{inputs}' has 3" in (
        message)
    assert f"recreate '{changelog}' with 3 partitions" in message


def test_the_checks_refuse_an_uncompacted_or_missing_changelog(
        kafka_bootstrap: str, kafka_topics: Callable[..., str]) -> None:
    inputs = kafka_topics("by-anon", 2)
    deleting = kafka_topics("anon-state", 2, {"cleanup.policy": "delete"})
    missing = f"{inputs}-no-such-changelog"
    with pytest.raises(ConfigError) as refused:
        verify_changelogs({"bootstrap.servers": kafka_bootstrap},
                          {deleting: inputs, missing: inputs}, 30)
    lines = str(refused.value).splitlines()
    assert any(f"'{deleting}' has cleanup.policy=delete; set cleanup.policy=compact" in line
               for line in lines)
    assert any(f"'{missing}' does not exist; create it with 2 partitions" in line
               for line in lines)
