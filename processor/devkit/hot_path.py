"""The cached path on a fixed batch, in one process: CPU per event without a broker's noise.

``make bench`` measures the stage as a process next to a broker on a shared machine;
its CPU figures move with whatever else runs. This runs the pipeline itself over a
fixed batch of analytics.js-shaped events whose emails are all cached, so that two
versions of the code can be compared on the same work: by CPU time (``--repeat``
takes the best of several runs), by a profile (``--profile``), or by instruction
counts, which no neighbour can disturb::

    python -m processor.devkit.hot_path --size medium --events 20000 [--profile]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m processor.devkit.hot_path --events 2000 --repeat 1

With ``--sink kafka`` outputs go through the stage's real producer settings to
librdkafka's in-process mock cluster, so produce calls and delivery reports are
counted too; ``--sink null`` confirms each output at once.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import SecretStr

from processor.adapters.json_codec import JsonCodec
from processor.adapters.kafka import KafkaSink
from processor.core.cache import TTLCache
from processor.core.clock import SystemClock
from processor.core.enrichment.answers import Found, Remembered
from processor.core.records import Record
from processor.devkit.clearbit_records import company_record, person_record
from processor.devkit.samples import EVENT_SIZES, analytics_identify, person_email
from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.settings import Settings
from processor.runtime.ports import DeliveryCallback
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.pipeline import Pipeline, Topics

TOPICS = Topics("hot-in", "hot-out", "hot-dlq")
DISTINCT = 1000


class _Sensor:
    """Takes every report and keeps nothing (the Prometheus sensor batches per poll too)."""

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_args, **_kwargs: None


class _NoLookups:
    """Every email is in the cache: nothing is ever looked up."""

    has_completed = False

    def start(self) -> None: ...
    def submit(self, emails: list[str]) -> None: ...
    def take_completed(self) -> list[Any]:
        return []
    def stop(self, timeout: float = 5.0) -> None: ...


class NullSink:
    """Confirms each output as it is produced."""

    refused: list[str]

    def __init__(self) -> None:
        self.refused = []
        self.count = 0

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any,
                on_delivery: DeliveryCallback | None, partition: int = -1) -> None:
        self.count += 1
        if on_delivery is not None:
            on_delivery(None, None)

    def poll(self, timeout: float) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0

    def close(self) -> None:
        pass


def batches(size: str, events: int, batch: int = 500) -> list[list[Record]]:
    """``events`` records over ``DISTINCT`` emails and keys, in batches as polled."""
    records = []
    for i in range(events):
        person = i % DISTINCT
        value = orjson.dumps(analytics_identify(i, person_email(person),
                                                user_id=f"user-{person}",
                                                message_id=f"h-{i}", size=size))
        records.append(Record(TOPICS.input, i % 3, i // 3, value, key=f"user-{person}".encode(),
                              timestamp_ms=1))
    return [records[n:n + batch] for n in range(0, len(records), batch)]


def build(sink_kind: str) -> tuple[Callable[[], Pipeline], Any]:
    """A maker of fresh pipelines (each run starts its offsets anew) over one warm cache."""
    clock = SystemClock()
    codec = JsonCodec()
    memory = LookupCache(cache=TTLCache[Remembered](DISTINCT * 2, clock), codec=codec,
                         clock=clock, found_ttl=86400, not_found_ttl=86400)
    for person in range(DISTINCT):
        email = person_email(person)
        memory.remember(email, Found(person_record(email), company_record(email.split("@")[1])))
    sink: Any
    if sink_kind == "kafka":
        settings = Settings(clearbit_api_key=SecretStr("sk_hot"))
        config, sources = kafka_config(settings, "producer", {})
        sink = KafkaSink({**config, "test.mock.num.brokers": 1}, sources)
    else:
        sink = NullSink()

    def make() -> Pipeline:
        return Pipeline(topics=TOPICS, codec=codec, sink=sink, lookups=_NoLookups(),
                        sensor=_Sensor(), clock=clock, memory=memory)
    return make, sink


def run_once(make: Callable[[], Pipeline], sink: Any, work: list[list[Record]]) -> float:
    """CPU seconds to take every batch, as the stage's loop does (handle, deliveries,
    positions)."""
    pipeline = make()
    started = time.process_time()
    for records in work:
        pipeline.handle(records)
        sink.poll(0)
        pipeline.advance()
        pipeline.report()
    sink.flush(30)
    pipeline.advance()
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hot_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(EVENT_SIZES), default="medium")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one counts")
    parser.add_argument("--sink", choices=("null", "kafka"), default="null")
    parser.add_argument("--profile", action="store_true", help="cProfile one run, top 25")
    args = parser.parse_args(argv)
    work = batches(args.size, args.events)
    make, sink = build(args.sink)
    run_once(make, sink, work[:2])  # warm: first-call costs are not per-event costs
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_once(make, sink, work)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    best = min(run_once(make, sink, work) for _ in range(max(1, args.repeat)))
    value_bytes = sum(len(r.value() or b"") for batch in work for r in batch) / args.events
    print(f"{args.size} events ({value_bytes:.0f} B), sink {args.sink}: "
          f"{best / args.events * 1e6:.2f} us CPU/event (best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
