"""The benchmark's scenarios (see ``processor.devkit.bench``) and its results table."""

from __future__ import annotations

import statistics
import time
import uuid
from functools import partial
from typing import Any

import orjson
from confluent_kafka import Consumer

from processor.core.enrichment.events import output_message_id
from processor.devkit.bench import (
    Bench,
    Progress,
    Running,
    Scenario,
    cached_events,
    new_email_events,
    produce,
    say,
    schema_registry,
    wait_for_outputs,
)

DISTINCT = 200  # emails in the cached-path scenarios: all cached after the first few


def _throughput(bench: Bench, names: dict[str, str], running: list[Running], count: int,
                timeout: float = 600) -> dict[str, Any]:
    """Rate and CPU between 10% and 90% of the outputs (start-up, group join, cache
    warm-up and the tail are outside that window)."""
    progress = Progress(bench.bootstrap, names["output"])
    try:
        progress.follow(count, timeout)
    finally:
        for process in running:
            process.stop()
    start, end, events = progress.window()
    cpu = sum(p.watch.cpu_between(start, end) for p in running)
    # Peak resident memory in the first and the second half of the outputs: a process
    # whose memory grew with the backlog would be higher in the second.
    _, middle, _ = progress.window(0.0, 0.5)
    first, last = progress.points[0][0], progress.points[-1][0]
    halves = [max(p.watch.peak_rss_between(a, b) for p in running)
              for a, b in ((first, middle), (middle, last))]
    return {"events_per_s": round(events / (end - start)),
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
            "peak_rss_mb": round(max(p.watch.peak_rss for p in running) / 2**20, 1),
            "peak_rss_mb_halves": [round(h / 2**20, 1) for h in halves],
            "events": count}


def cached_path(bench: Bench, quick: bool) -> dict[str, Any]:
    count = 100_000 if quick else 400_000
    base = bench.topics("bare")
    # The bare loop is several times faster: more records keep its window long enough
    # to measure.
    produce(bench.bootstrap, base["input"], cached_events(count * 3, DISTINCT))
    bare = _throughput(bench, base, [bench.start_bare_loop(base)], count * 3)
    say(f"   bare loop: {bare}")
    sized = bench.topics("bare-sized")
    produce(bench.bootstrap, sized["input"], cached_events(count, DISTINCT))
    same_size = _throughput(bench, sized, [bench.start_bare_loop(sized, pad_bytes=5000)],
                            count)
    say(f"   bare loop, 5 kB outputs: {same_size}")
    names = bench.topics("cached")
    produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT))
    stage = _throughput(bench, names, [bench.start_processor(names)], count)
    say(f"   stage:     {stage}")
    ratio = stage["events_per_s"] / bare["events_per_s"] if bare["events_per_s"] else 0.0
    sized_ratio = stage["events_per_s"] / same_size["events_per_s"]
    return {"bare_loop": bare, "bare_loop_5kB_outputs": same_size, "stage": stage,
            "ratio": round(ratio, 2), "ratio_to_same_size_outputs": round(sized_ratio, 2),
            "target": ">= 0.6", "met": ratio >= 0.6}


def cached_avro(bench: Bench, quick: bool) -> dict[str, Any]:
    """The cached path with Avro input and output (and a real schema registry), next to
    JSON in the same run."""
    from processor.adapters.avro.datum import identify_to_datum  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.registry import SchemaRegistry  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.schemas import IDENTIFY_SCHEMA  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.writer import AvroWriter  # noqa: PLC0415 - Avro only

    count = 50_000 if quick else 200_000
    figures = {}
    with schema_registry() as url:
        writer = AvroWriter(SchemaRegistry({"url": url}), schema=IDENTIFY_SCHEMA,
                            to_datum=identify_to_datum)
        for form in ("json", "avro"):
            names = bench.topics(f"cached-{form}")
            env = {}
            if form == "avro":
                env = {"PROCESSOR_INPUT_FORMAT": "avro", "PROCESSOR_OUTPUT_FORMAT": "avro",
                       "SCHEMA_REGISTRY_URL": url}
                produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT),
                        encode=partial(writer.encode, topic=names["input"]))
            else:
                produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT))
            figures[form] = _throughput(bench, names, [bench.start_processor(names, **env)],
                                        count)
            say(f"   {form}: {figures[form]}")
    ratio = figures["avro"]["events_per_s"] / figures["json"]["events_per_s"]
    return {"json": figures["json"], "avro": figures["avro"], "ratio": round(ratio, 2)}


def lookup_path(bench: Bench, quick: bool) -> dict[str, Any]:
    latency = 0.05
    bench.clearbit.set_latency(latency * 1000)
    rows = []
    for workers in ([8, 32, 128] if quick else [8, 16, 32, 64, 128, 256]):
        ideal = workers / latency
        count = int(min(max(ideal * (4 if quick else 8), 1000), 20_000))
        names = bench.topics(f"lookup{workers}")
        produce(bench.bootstrap, names["input"], new_email_events(count, uuid.uuid4().hex[:6]))
        result = _throughput(bench, names, [bench.start_processor(
            names, PROCESSOR_MAX_IN_FLIGHT=str(workers),
            PROCESSOR_MAX_BUFFERED=str(max(10_000, workers * 20)))], count)
        row = {"in_flight": workers, "ideal_per_s": round(ideal),
               "lookups_per_s": result["events_per_s"],
               "of_ideal": round(result["events_per_s"] / ideal, 2),
               "cpu_us_per_lookup": result["cpu_us_per_event"]}
        say(f"   {row}")
        rows.append(row)
    bench.clearbit.set_latency(0)
    saturated = next((r["in_flight"] for r in rows if r["of_ideal"] < 0.9), None)
    below = [r for r in rows if saturated is None or r["in_flight"] < saturated]
    return {"latency_ms": latency * 1000, "rows": rows, "target": ">= 0.9 x C/L until CPU",
            "saturation_begins_at": saturated, "met": bool(below) and all(
                r["of_ideal"] >= 0.9 for r in below)}


def http_client(bench: Bench, quick: bool) -> dict[str, Any]:
    """The lookup path at C=32, L=50 ms with each HTTP client: CPU per lookup decides."""
    latency, workers = 0.05, 32
    bench.clearbit.set_latency(latency * 1000)
    count = 2000 if quick else 5000
    figures = {}
    for client in ("aiohttp", "httpx"):
        names = bench.topics(f"client-{client}")
        produce(bench.bootstrap, names["input"], new_email_events(count, uuid.uuid4().hex[:6]))
        result = _throughput(bench, names, [bench.start_processor(
            names, PROCESSOR_MAX_IN_FLIGHT=str(workers), PROCESSOR_HTTP_CLIENT=client)], count)
        figures[client] = {"lookups_per_s": result["events_per_s"],
                           "of_ideal": round(result["events_per_s"] * latency / workers, 2),
                           "cpu_us_per_lookup": result["cpu_us_per_event"]}
        say(f"   {client}: {figures[client]}")
    bench.clearbit.set_latency(0)
    return {"in_flight": workers, "latency_ms": latency * 1000, **figures}


def rate_limited_path(bench: Bench, quick: bool) -> dict[str, Any]:
    """Issue 3's run too: 10,000 events over 1,000 emails at 600/min (quick: 2,000/200)."""
    limit = 600
    events, distinct = (2000, 200) if quick else (10_000, 1000)
    bench.clearbit.set_rate_limit(limit)
    names = bench.topics("ratelimited")
    tag = uuid.uuid4().hex[:6]
    items = [(k, e) for k, e in new_email_events(distinct, tag)]
    produce(bench.bootstrap, names["input"],
            (items[i % distinct] for i in range(events)))
    running = bench.start_processor(names, CLEARBIT_RATE_LIMIT_PER_MINUTE=str(limit),
                                    PROCESSOR_MAX_IN_FLIGHT="32")
    wait_for_outputs(bench.bootstrap, names["output"], events, timeout=distinct / 10 * 3 + 120)
    running.stop()
    log = [e for e in bench.clearbit.requests() if e["status"]]
    stats = bench.clearbit.stats()
    times = sorted(e["time"] for e in log)
    # Requests per minute over the run, from the server's own log.
    achieved = (len(times) - 1) / (times[-1] - times[0]) * 60 if len(times) > 1 else 0.0
    bench.clearbit.set_rate_limit(0)
    result: dict[str, Any] = {"events": events, "distinct_emails": distinct,
                              "limit_per_min": limit,
              "http_requests": stats["total"], "http_429": stats["by_status"].get("429", 0),
              "achieved_per_min": round(achieved, 1), "of_limit": round(achieved / limit, 3),
              "max_in_any_60s": stats["max_requests_in_any_60s_window"],
              "target": ">= 0.97 x R, zero 429"}
    result["met"] = result["of_limit"] >= 0.97 and result["http_429"] == 0
    return result


def memory(bench: Bench, quick: bool) -> dict[str, Any]:
    sizes = (20_000, 200_000) if quick else (100_000, 1_000_000)
    peaks, halves = {}, {}
    for size in sizes:
        names = bench.topics(f"memory{size}")
        produce(bench.bootstrap, names["input"], cached_events(size, DISTINCT))
        result = _throughput(bench, names, [bench.start_processor(names)], size,
                             timeout=900)
        peaks[size] = result["peak_rss_mb"]
        halves[size] = result["peak_rss_mb_halves"]
        say(f"   backlog {size}: peak RSS {result['peak_rss_mb']} MB, in the first and "
            f"second half {halves[size]} ({result['events_per_s']} events/s)")
    small, large = peaks[sizes[0]], peaks[sizes[1]]
    first, second = halves[sizes[1]]
    # Flat: the second half of the big backlog peaks no higher than its first half
    # (5% for noise), and 10 times the backlog is far from 10 times the memory.
    return {"peak_rss_mb": {str(k): v for k, v in peaks.items()},
            "large_backlog_halves_mb": halves[sizes[1]],
            "growth": round(large / small, 2), "target": "flat, < 250 MB",
            "met": large < 250 and second <= first * 1.05}


def latency(bench: Bench, quick: bool) -> dict[str, Any]:
    rate, seconds = 2000, (10 if quick else 30)
    names = bench.topics("latency", config={"message.timestamp.type": "LogAppendTime"})
    produce(bench.bootstrap, names["input"], cached_events(DISTINCT, DISTINCT))  # warm-up
    running = bench.start_processor(names)
    wait_for_outputs(bench.bootstrap, names["output"], DISTINCT, timeout=120)
    produce(bench.bootstrap, names["input"],
            cached_events(rate * seconds, DISTINCT, offset=DISTINCT), rate=rate)
    wait_for_outputs(bench.bootstrap, names["output"], DISTINCT + rate * seconds, timeout=300)
    running.stop()
    # The warm-up's events waited for the process to start: they are not counted.
    warm_up = {f"b-{i}" for i in range(DISTINCT)}
    by_output = {output_message_id(mid, ""): t
                 for mid, t in _append_times(bench, names["input"]).items()
                 if mid not in warm_up}
    delays = sorted(out_time - by_output[output_id]
                    for output_id, out_time in _append_times(bench, names["output"]).items()
                    if output_id in by_output)
    p50 = statistics.median(delays)
    p99 = delays[int(len(delays) * 0.99) - 1]
    return {"offered_per_s": rate, "seconds": seconds, "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(delays[-1] * 1000, 1)}


def _append_times(bench: Bench, topic: str) -> dict[str, float]:
    consumer = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": f"r-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    metadata = consumer.list_topics(topic, timeout=30)
    todo = set(metadata.topics[topic].partitions)
    consumer.subscribe([topic])
    found: dict[str, float] = {}
    try:
        while todo:
            for message in consumer.consume(5000, 1.0):
                if message.error() is not None:
                    todo.discard(message.partition())
                    continue
                event = orjson.loads(message.value() or b"{}")
                found[event["messageId"]] = message.timestamp()[1] / 1000
    finally:
        consumer.close()
    return found


def scale_out(bench: Bench, quick: bool) -> dict[str, Any]:
    count = 50_000 if quick else 200_000
    figures = {}
    for replicas in (1, 2):
        names = bench.topics(f"scale{replicas}", partitions=6)
        produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT))
        running = [bench.start_processor(names) for _ in range(replicas)]
        figures[replicas] = _throughput(bench, names, running, count)
        say(f"   {replicas} process(es): {figures[replicas]}")
        time.sleep(1)
    ratio = figures[2]["events_per_s"] / figures[1]["events_per_s"]
    return {"one": figures[1], "two": figures[2], "ratio": round(ratio, 2)}


SCENARIOS: dict[str, Scenario] = {
    "cached": cached_path, "cached-avro": cached_avro, "lookup": lookup_path,
    "http-client": http_client, "rate-limited": rate_limited_path, "memory": memory,
    "latency": latency, "scale-out": scale_out,
}


def table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [f"Benchmark, {machine['date']}, {machine['cores']} cores, Python "
             f"{machine['python']}{' (quick sizes)' if report['quick'] else ''}",
             "", "| scenario | figure | target | met |", "|---|---|---|---|"]
    for name, result in report["scenarios"].items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error']} | | no |")
            continue
        lines.append(f"| {name} | {_figure(name, result)} | {result.get('target', '')} | "
                     f"{_met(result)} |")
    return "\n".join(lines)


def _met(result: dict[str, Any]) -> str:
    if "met" not in result:
        return "(reported)"
    return "yes" if result["met"] else "no"


def _figure(name: str, r: dict[str, Any]) -> str:  # noqa: PLR0911 - one line per scenario
    if name == "cached":
        sized = r["bare_loop_5kB_outputs"]
        return (f"stage {r['stage']['events_per_s']}/s ({r['stage']['cpu_us_per_event']} us CPU"
                f"/event) vs bare loop {r['bare_loop']['events_per_s']}/s "
                f"({r['bare_loop']['cpu_us_per_event']} us): **{r['ratio']}x**; vs the bare "
                f"loop writing 5 kB outputs {sized['events_per_s']}/s "
                f"({sized['cpu_us_per_event']} us): {r['ratio_to_same_size_outputs']}x")
    if name == "cached-avro":
        return (f"Avro {r['avro']['events_per_s']}/s ({r['avro']['cpu_us_per_event']} us CPU"
                f"/event) vs JSON {r['json']['events_per_s']}/s "
                f"({r['json']['cpu_us_per_event']} us): {r['ratio']}x")
    if name == "lookup":
        rows = "; ".join(f"C={x['in_flight']}: {x['lookups_per_s']}/s = {x['of_ideal']}x C/L, "
                         f"{x['cpu_us_per_lookup']} us CPU" for x in r["rows"])
        return f"L={r['latency_ms']:.0f} ms: {rows}; below 0.9x from C={r['saturation_begins_at']}"
    if name == "http-client":
        return "; ".join(f"{c}: {r[c]['lookups_per_s']}/s = {r[c]['of_ideal']}x C/L, "
                         f"{r[c]['cpu_us_per_lookup']} us CPU/lookup" for c in ("aiohttp", "httpx")
                         ) + f" (C={r['in_flight']}, L={r['latency_ms']:.0f} ms)"
    if name == "rate-limited":
        return (f"{r['events']} events / {r['distinct_emails']} emails at {r['limit_per_min']}/min:"
                f" {r['http_requests']} requests, {r['http_429']} x 429, "
                f"{r['achieved_per_min']}/min = **{r['of_limit']}x R**")
    if name == "memory":
        peaks = ", ".join(f"{k} backlog: {v} MB" for k, v in r["peak_rss_mb"].items())
        first, second = r["large_backlog_halves_mb"]
        return (f"peak RSS {peaks} (x{r['growth']}); the big backlog's first half "
                f"{first} MB, second half {second} MB")
    if name == "latency":
        return (f"at {r['offered_per_s']}/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"max {r['max_ms']} ms")
    if name == "scale-out":
        return (f"1 process {r['one']['events_per_s']}/s, 2 processes "
                f"{r['two']['events_per_s']}/s: **{r['ratio']}x**")
    return str(r)
