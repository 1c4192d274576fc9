"""The benchmark's scenarios (see ``processor.devkit.bench``) and its results table.

Every figure comes with the cores its process used over the measured window (all its
threads), and how busy its busiest thread was (the stage's loop; the lookup pool's
event loop on the lookup path): running, or runnable but waiting for a CPU the
machine's other work held, so that a shared machine does not pass for an idle
process. A run that had a backlog the whole window, was bound by nothing it is meant
to respect (the provider's latency, the rate limit), whose busiest thread was busy
less than ``BUSY`` of the time and whose process used less than ``BUSY`` of a core is
flagged idle-bound, when the machine had CPU to spare (at least ``SPARE`` of it idle
over the window): it waited on something of its own (a prefetch that stalled, a
commit, a lock) instead of working. Both, because each alone misleads: on a shared
machine a process that wants a core gets less (its thread is busy, waiting for a
CPU), and two Python threads that take turns on the interpreter's lock (the lookup
pool's event loop and the stage's loop) each look idle while the process uses a core.
And the spare CPU, because a machine with none leaves every process waiting on the
others (two stages and the broker on two cores wait on each other's sends and
fetches): that run is CPU-bound, and says so with the machine's idle share.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from confluent_kafka import Consumer

from processor.core.enrichment.events import output_message_id
from processor.devkit.bench_rig import (
    BEFORE_ISSUE_14,
    QUIX_PYTHON,
    Bench,
    Progress,
    Running,
    Scenario,
    busiest_thread_share,
    cached_events,
    code_at,
    cores_between,
    machine_idle_share,
    new_email_events,
    produce,
    say,
    schema_registry,
    wait_for_members,
    wait_for_outputs,
)
from processor.devkit.samples import EVENT_SIZES

DISTINCT = 1000  # emails in the cached-path scenarios: all cached after the first few
BUSY = 0.85  # of a core: below it, with a backlog and no bound to respect, a run idles
SPARE = 0.15  # of the machine's CPU idle: below it, nothing can keep a core busy
TARGET_SIZE = "medium"  # the event size the cached path's target is judged on


def idle_bound(busy: float, cores: float, processes: int = 1, spare: float = 1.0) -> bool:
    """Neither its busiest thread was busy ``BUSY`` of the window nor each process used
    ``BUSY`` of a core, while ``spare`` (the machine's idle share) was at least ``SPARE``
    (see the module's docstring)."""
    return busy < BUSY and cores / processes < BUSY and spare >= SPARE


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
    cores = cores_between(running, start, end)
    busy = busiest_thread_share(running, start, end)
    spare = machine_idle_share(running, start, end)
    # Peak resident memory in the first and the second half of the outputs: a process
    # whose memory grew with the backlog would be higher in the second.
    _, middle, _ = progress.window(0.0, 0.5)
    first, last = progress.points[0][0], progress.points[-1][0]
    halves = [max(p.watch.peak_rss_between(a, b) for p in running)
              for a, b in ((first, middle), (middle, last))]
    return {"events_per_s": round(events / (end - start)),
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
            "cores": round(cores, 2), "busy": round(busy, 2),
            "machine_idle": round(spare, 2),
            "idle_bound": idle_bound(busy, cores, len(running), spare),
            "peak_rss_mb": round(max(p.watch.peak_rss for p in running) / 2**20, 1),
            "peak_rss_mb_halves": [round(h / 2**20, 1) for h in halves],
            "events": count}


def cached_path(bench: Bench, quick: bool) -> dict[str, Any]:
    """Each event size of ``EVENT_SIZES``: the bare loop and the stage on the same events."""
    count = 100_000 if quick else 200_000
    sizes: dict[str, Any] = {}
    for size in EVENT_SIZES:
        # The bare loop is several times faster: more records keep its window long
        # enough to measure.
        base = bench.topics(f"bare-{size}")
        produce(bench.bootstrap, base["input"], cached_events(count * 2, DISTINCT, size=size))
        bare = _throughput(bench, base, [bench.start_bare_loop(base)], count * 2)
        say(f"   {size} events, bare loop: {bare}")
        names = bench.topics(f"cached-{size}")
        produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT, size=size))
        stage = _throughput(bench, names, [bench.start_processor(names)], count)
        say(f"   {size} events, stage:     {stage}")
        ratio = stage["events_per_s"] / bare["events_per_s"] if bare["events_per_s"] else 0.0
        sizes[size] = {"event_bytes": _event_bytes(size), "bare_loop": bare, "stage": stage,
                       "ratio": round(ratio, 2)}
    target = sizes[TARGET_SIZE]
    idle = [f"{size} {which}" for size, r in sizes.items() for which in ("stage", "bare_loop")
            if r[which]["idle_bound"]]
    return {"sizes": sizes, "stage": target["stage"], "bare_loop": target["bare_loop"],
            "ratio": target["ratio"], "idle_bound": idle, "peers": _peers(bench, count),
            "target": ">= 0.6", "met": target["ratio"] >= 0.6 and not idle}


def _peers(bench: Bench, count: int) -> dict[str, Any]:
    """On the target size, right after the stage: the bare loop writing the stage's
    outputs (the same bytes on the broker, none of the work), the job as a plain
    consumer with a 32-thread pool, and as a Quix Streams application (when its venv
    is there), each as a ratio to a second run of the stage; and the stage's code before
    issue 14 (when this checkout has it), whose CPU per event the issue's target halves."""
    peers: dict[str, Callable[[dict[str, str]], Running]] = {
        "bare_enriched": lambda names: bench.start_bare_loop(names, enriched=True),
        "pool": bench.start_pool_peer, "stage": bench.start_processor}
    runs: dict[str, Any] = {}
    if QUIX_PYTHON.exists():
        peers = {"quix": bench.start_quix_peer, **peers}
    else:
        runs["quix_missing"] = f"{QUIX_PYTHON} is missing (make quix-peer)"
        say(f"   quix peer left out: {runs['quix_missing']}")
    try:
        before = code_at(BEFORE_ISSUE_14, bench.workdir)
        peers = {"before": partial(bench.start_processor_at, before), **peers}
    except RuntimeError as error:
        runs["before_missing"] = str(error)
        say(f"   the code before issue 14 left out: {error}")
    for which, start in peers.items():
        names = bench.topics(f"peer-{which}")
        produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT, size=TARGET_SIZE))
        runs[which] = _throughput(bench, names, [start(names)], count)
        say(f"   {TARGET_SIZE} events, {which}: {runs[which]}")
    stage = runs["stage"]["events_per_s"]
    for which in set(peers) - {"stage"}:
        rate = runs[which]["events_per_s"]
        runs[f"stage_to_{which}"] = round(stage / rate, 2) if rate else 0.0
    if "before" in runs:
        cpu = runs["before"]["cpu_us_per_event"]
        runs["cpu_to_before"] = round(runs["stage"]["cpu_us_per_event"] / cpu, 2)
        runs["bare_enriched_cpu_to_before"] = round(
            runs["bare_enriched"]["cpu_us_per_event"] / cpu, 2)
    return runs


def _event_bytes(size: str) -> int:
    """The mean JSON size of the scenario's events of ``size``."""
    sample = [orjson.dumps(event) for _, event in cached_events(200, DISTINCT, size=size)]
    return round(sum(map(len, sample)) / len(sample))


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
                produce(bench.bootstrap, names["input"],
                        cached_events(count, DISTINCT, size=TARGET_SIZE),
                        encode=partial(writer.encode, topic=names["input"]))
            else:
                produce(bench.bootstrap, names["input"],
                        cached_events(count, DISTINCT, size=TARGET_SIZE))
            figures[form] = _throughput(bench, names, [bench.start_processor(names, **env)],
                                        count)
            say(f"   {form}: {figures[form]}")
    ratio = figures["avro"]["events_per_s"] / figures["json"]["events_per_s"]
    return {"json": figures["json"], "avro": figures["avro"], "ratio": round(ratio, 2),
            "idle_bound": [form for form, f in figures.items() if f["idle_bound"]]}


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
        of_ideal = result["events_per_s"] / ideal
        # Held by the provider's latency (C/L) is the bound this path is meant to reach.
        row = {"in_flight": workers, "ideal_per_s": round(ideal),
               "lookups_per_s": result["events_per_s"], "of_ideal": round(of_ideal, 2),
               "cpu_us_per_lookup": result["cpu_us_per_event"], "cores": result["cores"],
               "idle_bound": result["idle_bound"] and of_ideal < 0.9}
        say(f"   {row}")
        rows.append(row)
    bench.clearbit.set_latency(0)
    saturated = next((r["in_flight"] for r in rows if r["of_ideal"] < 0.9), None)
    below = [r for r in rows if saturated is None or r["in_flight"] < saturated]
    return {"latency_ms": latency * 1000, "rows": rows, "target": ">= 0.9 x C/L until CPU",
            "saturation_begins_at": saturated,
            "idle_bound": [f"C={r['in_flight']}" for r in rows if r["idle_bound"]],
            "met": bool(below) and all(r["of_ideal"] >= 0.9 for r in below)}


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
        of_ideal = result["events_per_s"] * latency / workers
        figures[client] = {"lookups_per_s": result["events_per_s"],
                           "of_ideal": round(of_ideal, 2),
                           "cpu_us_per_lookup": result["cpu_us_per_event"],
                           "cores": result["cores"],
                           "idle_bound": result["idle_bound"] and of_ideal < 0.9}
        say(f"   {client}: {figures[client]}")
    bench.clearbit.set_latency(0)
    return {"in_flight": workers, "latency_ms": latency * 1000, **figures,
            "idle_bound": [c for c, f in figures.items() if f["idle_bound"]]}


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
    began = time.time()
    wait_for_outputs(bench.bootstrap, names["output"], events, timeout=distinct / 10 * 3 + 120)
    ended = time.time()
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
              # Held by the rate limit by design: reported, never idle-bound.
              "cores": round(cores_between([running], began, ended), 2),
              "target": ">= 0.97 x R, zero 429"}
    result["met"] = result["of_limit"] >= 0.97 and result["http_429"] == 0
    return result


def memory(bench: Bench, quick: bool) -> dict[str, Any]:
    sizes = (20_000, 200_000) if quick else (100_000, 1_000_000)
    peaks, halves, figures = {}, {}, {}
    for size in sizes:
        names = bench.topics(f"memory{size}")
        produce(bench.bootstrap, names["input"], cached_events(size, DISTINCT, size=TARGET_SIZE))
        result = _throughput(bench, names, [bench.start_processor(names)], size,
                             timeout=900)
        figures[size] = result
        peaks[size] = result["peak_rss_mb"]
        halves[size] = result["peak_rss_mb_halves"]
        say(f"   backlog {size}: peak RSS {result['peak_rss_mb']} MB, in the first and "
            f"second half {halves[size]} ({result['events_per_s']} events/s, "
            f"{result['cores']} cores)")
    small, large = peaks[sizes[0]], peaks[sizes[1]]
    first, second = halves[sizes[1]]
    # Flat: the second half of the big backlog peaks no higher than its first half
    # (5% for noise), and 10 times the backlog is far from 10 times the memory.
    return {"peak_rss_mb": {str(k): v for k, v in peaks.items()},
            "large_backlog_halves_mb": halves[sizes[1]],
            "growth": round(large / small, 2), "target": "flat, < 250 MB",
            "cores": {str(k): f["cores"] for k, f in figures.items()},
            "idle_bound": [str(k) for k, f in figures.items() if f["idle_bound"]],
            "met": large < 250 and second <= first * 1.05}


def latency(bench: Bench, quick: bool) -> dict[str, Any]:
    rate, seconds = 2000, (10 if quick else 30)
    names = bench.topics("latency", config={"message.timestamp.type": "LogAppendTime"})
    produce(bench.bootstrap, names["input"],
            cached_events(DISTINCT, DISTINCT, size=TARGET_SIZE))  # warm-up
    running = bench.start_processor(names)
    wait_for_outputs(bench.bootstrap, names["output"], DISTINCT, timeout=120)
    began = time.time()
    produce(bench.bootstrap, names["input"],
            cached_events(rate * seconds, DISTINCT, offset=DISTINCT, size=TARGET_SIZE),
            rate=rate)
    wait_for_outputs(bench.bootstrap, names["output"], DISTINCT + rate * seconds, timeout=300)
    ended = time.time()
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
    # Paced input, no backlog: the cores are reported, never idle-bound.
    return {"offered_per_s": rate, "seconds": seconds, "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(delays[-1] * 1000, 1),
            "cores": round(cores_between([running], began, ended), 2)}


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
    """One process and two on six partitions, measured once each process holds its
    partitions: the first to join works alone for seconds while the second waits for the
    rebalance, which a window from 10% of the outputs does not always leave out."""
    count = 100_000 if quick else 400_000
    partitions = 6
    figures = {}
    for replicas in (1, 2):
        names = bench.topics(f"scale{replicas}", partitions=partitions)
        produce(bench.bootstrap, names["input"], cached_events(count, DISTINCT, size=TARGET_SIZE))
        running = [bench.start_processor(names) for _ in range(replicas)]
        wait_for_members(bench.bootstrap, names["group"], replicas, partitions)
        figures[replicas] = _throughput(bench, names, running, count)
        say(f"   {replicas} process(es): {figures[replicas]}")
        time.sleep(1)
    ratio = figures[2]["events_per_s"] / figures[1]["events_per_s"]
    return {"one": figures[1], "two": figures[2], "ratio": round(ratio, 2),
            "idle_bound": [f"{n} process(es)" for n, f in figures.items() if f["idle_bound"]]}


def conversions_page_path(bench: Bench, quick: bool) -> dict[str, Any]:
    """The conversions stage's rows: the page path against the bare loop, memory by
    distinct visitors, restore from its changelog (processor.devkit.bench_conversions)."""
    from processor.devkit.bench_conversions import conversion_figures  # noqa: PLC0415

    return conversion_figures(bench.bootstrap, quick)


def conversions_state(bench: Bench, quick: bool) -> dict[str, Any]:
    """Restore rate and peak RSS of the stores by key count (processor.devkit.bench_state)."""
    from processor.devkit.bench_state import state_figures  # noqa: PLC0415

    return state_figures(bench.bootstrap, quick)


def delivery(bench: Bench, quick: bool) -> dict[str, Any]:
    """Conversions/s to the local Meta and Google servers against batch x in flight /
    latency (processor.devkit.bench_delivery)."""
    from processor.devkit.bench_delivery import delivery_figures  # noqa: PLC0415

    return delivery_figures(bench.bootstrap, quick)


SCENARIOS: dict[str, Scenario] = {
    "cached": cached_path, "cached-avro": cached_avro, "lookup": lookup_path,
    "http-client": http_client, "rate-limited": rate_limited_path, "memory": memory,
    "latency": latency, "scale-out": scale_out, "conversions": conversions_page_path,
    "state": conversions_state, "delivery": delivery,
}


def _tables() -> dict[str, Callable[[dict[str, Any]], str]]:
    from processor.devkit import bench_conversions, bench_delivery, bench_state  # noqa: PLC0415

    return {"conversions": bench_conversions.table, "delivery": bench_delivery.table,
            "state": bench_state.table}


def table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    broker = f", {report['broker']}" if report.get("broker") else ""
    lines = [f"Benchmark, {machine['date']}, {machine['cores']} cores, Python "
             f"{machine['python']}{broker}{' (quick sizes)' if report['quick'] else ''}",
             "", "| scenario | figure | target | met |", "|---|---|---|---|"]
    idle: list[str] = []
    for name, result in report["scenarios"].items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error']} | | no |")
            continue
        lines.append(f"| {name} | {_figure(name, result)} | {result.get('target', '')} | "
                     f"{_met(result)} |")
        idle += [f"{name} ({what})" for what in result.get("idle_bound", ())]
    lines += ["", f"Idle-bound (busiest thread busy and cores used below {BUSY}, with a backlog, "
              f"while at least {SPARE} of the machine's CPU was idle): "
              f"{', '.join(idle) if idle else 'none'}"]
    return "\n".join(lines)


def _met(result: dict[str, Any]) -> str:
    if "met" not in result:
        return "(reported)"
    return "yes" if result["met"] else "no"


def _run(r: dict[str, Any], unit: str = "event") -> str:
    """'12345/s (25.1 us CPU/event, 0.97 cores)', flagged when idle-bound; with the
    machine's idle share when the busiest thread slept some of the window."""
    flag = ", **idle-bound**" if r.get("idle_bound") else ""
    busy = f", busiest thread {r['busy']} busy" if "busy" in r else ""
    if r.get("busy", 1.0) < BUSY and "machine_idle" in r:
        busy += f", machine {r['machine_idle']} idle"
    return (f"{r['events_per_s']}/s ({r['cpu_us_per_event']} us CPU/{unit}, "
            f"{r.get('cores', '?')} cores{busy}{flag})")


def _cached_figure(r: dict[str, Any]) -> str:
    target = (f"stage {_run(r['stage'])} vs bare loop {_run(r['bare_loop'])}: "
              f"**{r['ratio']}x**")
    sizes = r.get("sizes", {})
    if TARGET_SIZE in sizes:
        target = f"{sizes[TARGET_SIZE]['event_bytes']} B events: " + target
    others = "; ".join(f"{x['event_bytes']} B events: stage {_run(x['stage'])} vs bare "
                       f"loop {_run(x['bare_loop'])}: {x['ratio']}x"
                       for size, x in sizes.items() if size != TARGET_SIZE)
    peers = r.get("peers")
    if peers:
        others = (f"{others}<br>peers on the {TARGET_SIZE} events: stage "
                  f"{_run(peers['stage'])}; bare loop writing the stage's outputs "
                  f"{_run(peers['bare_enriched'])}: stage "
                  f"**{peers['stage_to_bare_enriched']}x**; 32-thread pool "
                  f"{_run(peers['pool'])}: stage "
                  f"**{peers['stage_to_pool']}x**")
        if "quix" in peers:
            others += (f"; Quix Streams {_run(peers['quix'])}: stage "
                       f"**{peers['stage_to_quix']}x**")
        elif "quix_missing" in peers:
            others += f"; Quix Streams not run: {peers['quix_missing']}"
        if "before" in peers:
            others += (f"<br>CPU per event against the stage before issue 14 "
                       f"({BEFORE_ISSUE_14}, {_run(peers['before'])}): stage "
                       f"**{peers['cpu_to_before']}x** (target <= 0.5x), the bare loop "
                       f"writing the stage's outputs {peers['bare_enriched_cpu_to_before']}x")
        elif "before_missing" in peers:
            others += f"<br>the stage before issue 14 not run: {peers['before_missing']}"
    return target if not others else f"{target}; {others}"


def _figure(name: str, r: dict[str, Any]) -> str:  # noqa: PLR0911 - one line per scenario
    if name == "cached":
        return _cached_figure(r)
    if name == "cached-avro":
        return f"Avro {_run(r['avro'])} vs JSON {_run(r['json'])}: {r['ratio']}x"
    if name == "lookup":
        rows = "; ".join(f"C={x['in_flight']}: {x['lookups_per_s']}/s = {x['of_ideal']}x C/L, "
                         f"{x['cpu_us_per_lookup']} us CPU, {x.get('cores', '?')} cores"
                         for x in r["rows"])
        return f"L={r['latency_ms']:.0f} ms: {rows}; below 0.9x from C={r['saturation_begins_at']}"
    if name == "http-client":
        return "; ".join(f"{c}: {r[c]['lookups_per_s']}/s = {r[c]['of_ideal']}x C/L, "
                         f"{r[c]['cpu_us_per_lookup']} us CPU/lookup, "
                         f"{r[c].get('cores', '?')} cores" for c in ("aiohttp", "httpx")
                         ) + f" (C={r['in_flight']}, L={r['latency_ms']:.0f} ms)"
    if name == "rate-limited":
        return (f"{r['events']} events / {r['distinct_emails']} emails at {r['limit_per_min']}/min:"
                f" {r['http_requests']} requests, {r['http_429']} x 429, "
                f"{r['achieved_per_min']}/min = **{r['of_limit']}x R** "
                f"({r.get('cores', '?')} cores)")
    if name == "memory":
        cores = r.get("cores", {})
        peaks = ", ".join(f"{k} backlog: {v} MB ({cores.get(k, '?')} cores)"
                          for k, v in r["peak_rss_mb"].items())
        first, second = r["large_backlog_halves_mb"]
        return (f"peak RSS {peaks} (x{r['growth']}); the big backlog's first half "
                f"{first} MB, second half {second} MB")
    if name == "latency":
        return (f"at {r['offered_per_s']}/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"max {r['max_ms']} ms ({r.get('cores', '?')} cores)")
    if name == "scale-out":
        return (f"1 process {_run(r['one'])}, 2 processes {_run(r['two'])}: "
                f"**{r['ratio']}x**")
    tables = _tables()
    if name in tables:
        return tables[name](r).replace("\n", "<br>")
    return str(r)
