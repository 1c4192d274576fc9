"""The conversions stage's page-event path on a fixed batch, in one process, for profiling:
the pipeline as ``processor conversions`` builds it, with RocksDB stores on a temporary
disk and a sink that confirms at once and hands the ``by-anon`` records back, as the
broker would. No Kafka: what librdkafka costs is the benchmark's to measure.

It times both halves of the path (the router on the input events, the visitor task on
the touches they make) and prints the CPU µs per event of each, the best of a few
repeats; for figures a shared machine cannot move, count instructions instead:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m processor.devkit.conversion_hot_path --events 2000 --repeats 3

less the same with ``--repeats 1``, over 2 x 2000 events; ``--profile`` prints cProfile's top
functions of each half.

    python -m processor.devkit.conversion_hot_path [--events N] [--repeats N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from processor.adapters.conversion_metrics import ConversionMetrics
from processor.adapters.json_codec import ConversionEvents
from processor.adapters.state_store import RocksDBStore, StoreOptions
from processor.core.clock import SystemClock
from processor.core.conversions.audiences import parse_audiences
from processor.core.records import Headers, Record
from processor.devkit.bench_conversions import AUDIENCES, page_event
from processor.stages.conversions.pipeline import (
    ConversionOptions,
    ConversionPipeline,
    ConversionTopics,
)

EVENTS, BY_ANON = "events", "conv.by-anon"
TOPICS = ConversionTopics(frozenset({EVENTS, "identifies"}), BY_ANON, "conv.by-person",
                          "conv.outbox", "conv.dlq")


class LoopbackSink:
    """Confirms every record at once; keeps those for ``by-anon`` to feed them back."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.by_anon: list[tuple[bytes | None, bytes | None]] = []

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None, on_delivery: Callable[[Any, Any], None] | None,
                partition: int = -1) -> None:
        if topic == BY_ANON:
            self.by_anon.append((key, value))
        if on_delivery is not None:
            on_delivery(None, None)

    def poll(self, timeout: float) -> None:
        """Confirmed already."""

    def flush(self, timeout: float) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""


class DiskStores:
    """One RocksDB store per partition under a temporary directory, never restored."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self._root = root
        self._options = StoreOptions()
        self._open: dict[int, RocksDBStore] = {}

    def partition(self, partition: int) -> RocksDBStore:
        if partition not in self._open:
            self._open[partition] = RocksDBStore(self.name, partition, f"{self.name}-log",
                                                 self._root / self.name / str(partition),
                                                 self._options)
        return self._open[partition]

    def close(self, partitions: list[int], clean: bool) -> None:
        for partition in partitions:
            self._open.pop(partition).close()

    def owned(self) -> list[int]:
        return sorted(self._open)

    def estimated_records(self) -> int:
        return sum(s.approximate_count() for s in self._open.values())


def batches(records: list[Record], size: int = 500) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def pipeline_on(root: Path, sink: LoopbackSink) -> ConversionPipeline:
    audiences = parse_audiences(AUDIENCES)
    return ConversionPipeline(
        topics=TOPICS, audiences=audiences, decoder=ConversionEvents(), sink=sink,
        visitor_stores=DiskStores("visitors", root), person_stores=DiskStores("people", root),
        sensor=ConversionMetrics([a.key for a in audiences], ["visitors", "people"]),
        clock=SystemClock(),
        options=ConversionOptions(click_ttl_ms=90 * 86_400_000, settle_ms=30_000,
                                  future_skew=300, region="US"))


def run(count: int, repeats: int, profile: bool) -> dict[str, float]:
    """The same events each repeat, on new stores: each touch is a new visitor's write.
    Only handling scales with ``repeats`` (for instruction counts: run 3, less run 1)."""
    at = time.time() - 3600
    inputs = [Record(EVENTS, 0, i, value, key, timestamp_ms=int(at * 1000))
              for i in range(count) for key, value in [page_event(i, at, "0f0f0f0f")]]
    touches: list[Record] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="conv-hot-path-") as root:
        for repeat in range(repeats):
            sink = LoopbackSink()
            pipeline = pipeline_on(Path(root) / str(repeat), sink)
            for half in ("router", "visitor task"):
                batch = inputs if half == "router" else touches
                profiler = cProfile.Profile() if profile else None
                # CPU time, not wall: other processes on a shared machine then matter less.
                started = time.process_time()
                if profiler:
                    profiler.enable()
                for chunk in batches(batch):
                    pipeline.handle(chunk)
                    pipeline.advance()
                if profiler:
                    profiler.disable()
                micros = (time.process_time() - started) / len(batch) * 1e6
                figures[half] = min(figures.get(half, micros), micros)
                if profiler:
                    print(f"{half}:")
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
                if not touches:
                    touches = [Record(BY_ANON, 0, i, value, key)
                               for i, (key, value) in enumerate(sink.by_anon)]
                    if len(touches) != count:  # then this would not be the page path
                        raise RuntimeError(f"{len(touches)} touches from {count} page events")
            pipeline.stop()
    for half, micros in figures.items():
        print(f"{half}: {micros:.1f} us CPU per event (best of {repeats} x {count:,})")
    print(f"page path: {sum(figures.values()):.1f} us CPU per event, without librdkafka")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conversion_hot_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="the best one counts")
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions")
    args = parser.parse_args(argv)
    run(args.events, args.repeats, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
