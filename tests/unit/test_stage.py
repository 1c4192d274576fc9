"""The stage loop with fakes: checkpoints confirm deliveries before anything is committed."""

from __future__ import annotations

from typing import Any

import pytest

from processor.adapters.json_codec import JsonCodec
from processor.core.cache import TTLCache
from processor.core.enrichment.answers import Found, Remembered
from processor.core.errors import DeliveryError, FatalError, UnexpectedError
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.signals import StopRequest
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.pipeline import Pipeline, Topics
from tests.fakes import (
    FakeClock,
    FakeLookups,
    FakeSink,
    FakeSource,
    RecordingSensor,
    identify,
    record,
)

TP = ("identify.raw", 0)


def build(batches: list[list[Any]], sink: FakeSink, stop: StopRequest,
          clock: FakeClock) -> tuple[Stage, FakeSource]:
    source = FakeSource(batches, [TP])
    lookups = FakeLookups(answer=lambda email: Found({"id": email}, None))
    sensor = RecordingSensor()
    memory = LookupCache(cache=TTLCache[Remembered](100, clock), codec=JsonCodec(),
                          clock=clock, found_ttl=60, not_found_ttl=60)
    pipeline = Pipeline(topics=Topics("identify.raw", "identify.enriched", "identify.dlq"),
                        codec=JsonCodec(), sink=sink, lookups=lookups, sensor=sensor,
                        clock=clock, memory=memory)
    stage = Stage(options=StageOptions(input_topics=("identify.raw",), commit_interval=0.0,
                                       shutdown_timeout=1.0),
                  source=source, sink=sink, pipeline=pipeline, sensor=sensor, clock=clock,
                  stop=stop)
    return stage, source


def run_until_stopped(stage: Stage, source: FakeSource, stop: StopRequest,
                      turns_before_stop: int = 50) -> None:
    """Run the loop for ``turns_before_stop`` polls, then ask it to stop (no timers)."""
    def count(polls: int) -> None:
        if polls >= turns_before_stop:
            stop.request()

    source.before_poll = count
    stage.run()


def test_positions_are_stored_only_once_the_outputs_are_confirmed() -> None:
    sink, stop, clock = FakeSink(), StopRequest(), FakeClock()
    batch = [record(identify(f"u{i}@example.com"), offset=i) for i in range(5)]
    stage, source = build([batch], sink, stop, clock)
    run_until_stopped(stage, source, stop)
    assert len(sink.on("identify.enriched")) == 5
    assert source.stored[TP] == 5
    assert source.committed_positions[TP] == 5
    assert source.closed


def test_a_refused_delivery_is_fatal_and_nothing_past_it_is_committed() -> None:
    sink, stop, clock = FakeSink(), StopRequest(), FakeClock()
    sink.refuse = True
    batch = [record({"type": "track"}, offset=0)] + [
        record(identify(f"u{i}@example.com"), offset=i) for i in range(1, 4)]
    stage, source = build([batch], sink, stop, clock)
    with pytest.raises(DeliveryError, match="did not take 3 record"):
        run_until_stopped(stage, source, stop, turns_before_stop=500)
    # Only the skip before the outputs could be committed; the outputs were not confirmed.
    assert source.stored.get(TP, 0) <= 1
    assert source.committed_positions.get(TP, 0) <= 1


class TimedSource(FakeSource):
    """Remembers the timeout of every poll made while paused."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.paused_timeouts: list[float] = []

    def poll(self, max_records: int, timeout: float) -> list[Any]:
        if self.paused:
            self.paused_timeouts.append(timeout)
        return super().poll(max_records, timeout)


def test_a_paused_stage_looks_at_its_deliveries_again_soon() -> None:
    # Outputs are confirmed only when the sink is polled: with a buffer of 2, the stage
    # pauses after the first batch and resumes once the deliveries are served.
    sink, stop, clock = FakeSink(), StopRequest(), FakeClock()
    stage, _ = build([], sink, stop, clock)
    source = TimedSource([[record(identify(f"u{i}@example.com"), offset=i) for i in range(3)]],
                         [TP])
    stage._source = source
    stage._options = StageOptions(input_topics=("identify.raw",), commit_interval=0.0,
                                  shutdown_timeout=1.0, max_buffered=2)
    sink.poll = lambda timeout: None  # type: ignore[method-assign]  # deliveries held back
    original_poll = source.poll

    def poll_and_deliver(max_records: int, timeout: float) -> list[Any]:
        records = original_poll(max_records, timeout)
        if source.paused and len(source.paused_timeouts) >= 3:
            sink.deliver()
        return records

    source.poll = poll_and_deliver  # type: ignore[method-assign]
    run_until_stopped(stage, source, stop)
    assert source.paused_timeouts
    assert max(source.paused_timeouts) <= 0.01
    assert len(sink.on("identify.enriched")) == 3


class BrokenCodec(JsonCodec):
    """Decodes every value but one, on which it fails in a way nobody foresaw."""

    def decode(self, record: Any) -> dict[str, Any]:
        if record.offset() == 2:
            raise KeyError("nobody@example.com")
        return super().decode(record)


def test_an_unexpected_exception_is_a_fatal_stop_that_commits_nothing_past_it() -> None:
    sink, stop, clock = FakeSink(), StopRequest(), FakeClock()
    batch = [record({"type": "track"}, offset=i) for i in range(5)]
    stage, source = build([batch], sink, stop, clock)
    stage._pipeline._codec = BrokenCodec()  # the codec the pipeline calls
    with pytest.raises(UnexpectedError, match="unexpected KeyError in the stage loop") as raised:
        run_until_stopped(stage, source, stop, turns_before_stop=500)
    assert isinstance(raised.value, FatalError)
    assert "nobody@example.com" not in str(raised.value)
    # The two records before it were done; the failing one and those after it were not.
    assert source.committed_positions.get(TP, 0) == 2
    assert source.closed
