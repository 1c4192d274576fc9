"""The stage loop with fakes: checkpoints confirm deliveries before anything is committed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from processor.adapters.json_codec import JsonCodec
from processor.core.cache import TTLCache
from processor.core.errors import DeliveryError, FatalError, UnexpectedError
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.ports import Found
from processor.runtime.signals import StopRequest
from processor.stages.enrichment.lookup_cache import LookupMemory, Remembered
from processor.stages.enrichment.pipeline import Pipeline, Topics
from tests.fakes import FakeClock, FakeSink, FakeSource, RecordingSensor, identify, record

TP = ("identify.raw", 0)


class InstantLookups:
    """A lookup pool that answers every email at once with a found record."""

    def __init__(self) -> None:
        self.done: list[tuple[str, Any]] = []

    def start(self) -> None: ...

    def submit(self, emails: list[str]) -> None:
        self.done += [(e, Found({"id": e}, None)) for e in emails]

    def take_completed(self) -> list[tuple[str, Any]]:
        done, self.done = self.done, []
        return done

    @property
    def has_completed(self) -> bool:
        return bool(self.done)

    def stop(self, timeout: float = 5.0) -> None: ...


def build(batches: list[list[Any]], sink: FakeSink, stop: StopRequest,
          clock: FakeClock) -> tuple[Stage, FakeSource]:
    source = FakeSource(batches, [TP])
    lookups = InstantLookups()
    sensor = RecordingSensor()
    memory = LookupMemory(cache=TTLCache[Remembered](100, clock), codec=JsonCodec(),
                          clock=clock, found_ttl=60, not_found_ttl=60)
    pipeline = Pipeline(topics=Topics("identify.raw", "identify.enriched", "identify.dlq"),
                        codec=JsonCodec(), sink=sink, submit=lookups.submit, sensor=sensor,
                        clock=clock, memory=memory)
    stage = Stage(options=StageOptions(input_topic="identify.raw", commit_interval=0.0,
                                       shutdown_timeout=1.0),
                  source=source, sink=sink, pipeline=pipeline, lookups=lookups,  # type: ignore[arg-type]
                  memory=memory, sensor=sensor, clock=clock, stop=stop)
    return stage, source


def run_until_stopped(stage: Stage, stop: StopRequest, turns_before_stop: float = 0.3) -> None:
    timer = threading.Timer(turns_before_stop, stop.request)
    timer.start()
    try:
        stage.run()
    finally:
        timer.cancel()


def test_positions_are_stored_only_once_the_outputs_are_confirmed() -> None:
    sink, stop, clock = FakeSink(), StopRequest(), FakeClock()
    batch = [record(identify(f"u{i}@example.com"), offset=i) for i in range(5)]
    stage, source = build([batch], sink, stop, clock)
    run_until_stopped(stage, stop)
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
        run_until_stopped(stage, stop, turns_before_stop=5)
    # Only the skip before the outputs could be committed; the outputs were not confirmed.
    assert source.stored.get(TP, 0) <= 1
    assert source.committed_positions.get(TP, 0) <= 1


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
        run_until_stopped(stage, stop, turns_before_stop=5)
    assert isinstance(raised.value, FatalError)
    assert "nobody@example.com" not in str(raised.value)
    # The two records before it were done; the failing one and those after it were not.
    assert source.committed_positions.get(TP, 0) == 2
    assert source.closed
