"""Keyed state's pure part: where a restore starts, how it tracks its progress, and the
loop producing changelog records into their store's partition."""

from __future__ import annotations

from typing import Any

import pytest

from processor.runtime.loop import Stage, StageOptions
from processor.runtime.ports import Output
from processor.runtime.signals import StopRequest
from processor.runtime.state import RestoreProgress, restore_plan
from tests.fakes import FakeClock, FakeSink, FakeSource, RecordingSensor

# --- restore_plan ---------------------------------------------------------------------


def test_without_a_checkpoint_the_store_is_wiped_and_restored_from_the_start() -> None:
    plan = restore_plan(None, low=0, end=500)
    assert (plan.start, plan.wipe) == (0, True)


def test_a_clean_checkpoint_restores_only_the_tail() -> None:
    plan = restore_plan(420, low=0, end=500, age=60.0, max_age=3600.0)
    assert (plan.start, plan.wipe) == (420, False)


def test_a_checkpoint_at_the_end_reads_nothing() -> None:
    assert restore_plan(500, low=0, end=500) == (500, False, "from checkpoint 500")


@pytest.mark.parametrize(("checkpoint", "low", "end", "age", "reason"), [
    (600, 0, 500, 0.0, "past the changelog's end"),  # topic recreated or truncated
    (10, 40, 500, 0.0, "below the changelog's start"),  # records in between deleted
    (420, 0, 500, 7200.0, "old"),  # tombstones may have been compacted away
])
def test_an_untrustworthy_checkpoint_is_ignored(checkpoint: int, low: int, end: int,
                                                 age: float, reason: str) -> None:
    plan = restore_plan(checkpoint, low, end, age=age, max_age=3600.0)
    assert (plan.start, plan.wipe) == (low, True)
    assert reason in plan.why


# --- RestoreProgress --------------------------------------------------------------------


def test_progress_is_done_at_the_end_whether_by_records_or_by_markers() -> None:
    progress = RestoreProgress("clicks", 2, start=10, end=20, full=False, why="")
    assert not progress.done
    progress.applied(5, next_offset=15)
    assert not progress.done
    progress.reached(20)  # the rest were a commit marker and aborted records
    assert progress.done
    result = progress.result(1.5)
    assert (result.store, result.partition, result.records, result.seconds) == (
        "clicks", 2, 5, 1.5)
    assert (result.start, result.end) == (10, 20)


def test_records_committed_after_the_end_was_taken_move_the_end() -> None:
    progress = RestoreProgress("clicks", 0, start=0, end=10, full=True, why="")
    progress.applied(12, next_offset=12)
    assert (progress.done, progress.end) == (True, 12)
    progress.extend(20)  # an open transaction committed: its records are read too
    assert not progress.done


def test_a_partition_already_at_its_end_is_done_at_once() -> None:
    assert RestoreProgress("clicks", 0, start=7, end=7, full=False, why="").done


def test_progress_never_moves_back() -> None:
    progress = RestoreProgress("clicks", 0, start=0, end=100, full=True, why="")
    progress.applied(50, next_offset=50)
    progress.reached(30)
    assert progress.position == 50


# --- the loop puts a changelog record in its store's partition -----------------------------


class _TransactionalSink(FakeSink):
    def begin(self) -> None:
        pass

    def commit_transaction(self, positions: Any, group_metadata: Any, timeout: float) -> None:
        self.deliver()

    def abort(self, timeout: float) -> None:
        pass


class _DecidedPipeline:
    """Hands out one decided changelog record, then nothing."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.fatal = None
        self.decided = [Output("conv.anon-state", b"anon-1", b"v", None, 5)]

    def take_decided(self) -> tuple[list[Output], dict[tuple[str, int], int]]:
        decided, self.decided = self.decided, []
        return decided, {("conv.by-anon", 5): 10} if decided else {}

    def poll_timeout(self) -> float:
        return 0.0

    def outstanding(self) -> int:
        return 0

    def unfinished(self, tps: Any = None) -> int:
        return 0

    def advance(self) -> dict[tuple[str, int], int]:
        return {}

    def positions(self) -> dict[tuple[str, int], int]:
        return {}

    def start(self) -> None: ...
    def handle(self, records: Any) -> None: ...
    def pump(self) -> None: ...
    def assigned(self, tps: Any) -> None: ...
    def drop(self, tps: Any) -> None: ...
    def report(self) -> None: ...
    def stop(self) -> None: ...


def test_a_transactional_stage_produces_changelog_records_to_their_partition() -> None:
    sink, stop = _TransactionalSink(), StopRequest()
    source = FakeSource([], [("conv.by-anon", 5)])
    source.before_poll = lambda polls: stop.request() if polls >= 3 else None
    stage = Stage(options=StageOptions(input_topics=("conv.by-anon",), commit_interval=0.0,
                                       shutdown_timeout=0.5, transactional=True),
                  source=source, sink=sink, pipeline=_DecidedPipeline(),
                  sensor=RecordingSensor(), clock=FakeClock(), stop=stop)
    stage.run()
    assert sink.produced == [("conv.anon-state", b"anon-1", b"v", None)]
    assert sink.partitions == [5]
