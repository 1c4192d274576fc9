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


class HeldSink(FakeSink):
    """Confirms deliveries only when told to (``release``), and remembers every wait."""

    def __init__(self) -> None:
        super().__init__()
        self.released = False
        self.waits: list[float] = []

    def poll(self, timeout: float) -> None:
        self.waits.append(timeout)
        if self.released:
            self.deliver()


def held_stage(clock: FakeClock) -> tuple[Stage, FakeSource, HeldSink, StopRequest]:
    """A stage with a buffer of 2 and three records: it holds back after the first batch."""
    sink, stop = HeldSink(), StopRequest()
    stage, _ = build([], sink, stop, clock)
    source = FakeSource([[record(identify(f"u{i}@example.com"), offset=i) for i in range(3)]],
                        [TP])
    stage._source = source
    stage._options = StageOptions(input_topics=("identify.raw",), commit_interval=0.0,
                                  shutdown_timeout=1.0, max_buffered=2)
    return stage, source, sink, stop


def test_a_short_hold_waits_on_deliveries_and_keeps_the_prefetch() -> None:
    # Pausing the consumer drops librdkafka's prefetch and fetching restarts late after
    # the resume: a hold shorter than HOLD_BEFORE_PAUSE neither pauses nor polls it.
    clock = FakeClock()
    stage, source, sink, stop = held_stage(clock)
    source.before_poll = lambda polls: stop.request() if polls >= 5 else None
    polls_when_held: list[int] = []
    paused_when_held: list[bool] = []

    def waited(timeout: float) -> None:
        sink.waits.append(timeout)
        polls_when_held.append(source.polls)
        paused_when_held.append(source.paused)
        if len(sink.waits) >= 20:
            sink.released = True
        if sink.released:
            sink.deliver()

    sink.poll = waited  # type: ignore[method-assign]
    stage.run()
    held = polls_when_held[:19]
    assert held == [held[0]] * len(held), "the consumer was polled while held back"
    assert not any(paused_when_held[:19])
    assert max(sink.waits) <= 0.01
    assert len(sink.on("identify.enriched")) == 3


def test_a_long_hold_pauses_and_polls_the_consumer_for_the_group() -> None:
    clock = FakeClock()
    stage, source, sink, stop = held_stage(clock)
    paused_polls: list[float] = []
    original_poll = source.poll

    def poll(max_records: int, timeout: float) -> list[Any]:
        if source.paused:
            paused_polls.append(timeout)
            if len(paused_polls) >= 3:
                sink.released = True
        return original_poll(max_records, timeout)

    def wait(timeout: float) -> None:
        sink.waits.append(timeout)
        clock.advance(0.25)  # the broker takes its time
        if sink.released:
            sink.deliver()

    source.poll = poll  # type: ignore[method-assign]
    sink.poll = wait  # type: ignore[method-assign]
    source.before_poll = lambda polls: stop.request() if polls >= 10 else None
    stage.run()
    assert paused_polls
    assert max(paused_polls) <= 0.01
    assert source.paused_ever
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
