"""The conversions stage's figures: the page-event path against the bare loop, memory by
number of visitors, and the stage's own restore of its visitor store.

Each run is ``processor conversions`` as its own process (as in production) on fresh
topics, with a backlog of analytics.js page events, each from a new anonymousId and
landing with a gclid or an fbclid (or both): the router sends a touch to ``by-anon``,
and the visitor task stores the new visitor and writes its change to ``anon-state``.
Figures are read from the outside:

* throughput from the end offsets of ``by-anon`` and ``anon-state`` (a page event is
  done once its state change is out), polled every 50 ms: from 1% of the backlog on
  ``by-anon`` to all of it on ``anon-state``, so start-up and group joining are not
  counted;
* CPU from ``/proc/<pid>/stat`` over the same window, per event, and the cores that
  makes; from the main thread's ``schedstat``, the share of the window it ran and the
  share it was runnable but had no CPU (a shared machine's other load); peak RSS
  (``VmHWM``) over the whole run, and the peaks of ``VmRSS`` in its first and second
  half;
* the bare loop (``processor.devkit.bare_loop``: consume, decode, encode, produce) on
  the very same events in the same run, and the stage's figures as ratios to its;
* the restore: a new process with an empty state directory is given new visitors on
  every partition, restores each visitor store from the largest run's ``anon-state``,
  and logs its records and seconds; its CPU over those seconds gives the cores.

Sizes: 100k and 1M visitors (20k and 100k with ``--quick``); the throughput ratio is
taken on the larger, with the bare loop run before and after the stage (their mean
counts: on a shared machine the two runs show how much the others' load moved).
The generic store figures (RocksDB alone, and a dict for comparison) are
``processor.devkit.bench_state``'s. A benchmark, not a test: nothing fails on a slow
figure.

    python -m processor.devkit.bench_conversions [--quick] [--bootstrap HOST:PORT]
        [--env PROCESSOR_KAFKA_CONSUMER_...=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from processor.devkit.bare_loop import send
from processor.devkit.broker import LocalKafka, create_topics

PARTITIONS = 3
TICK = os.sysconf("SC_CLK_TCK")
AUDIENCES = """version: 1
audiences:
  - key: mql_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations:
      meta: {pixel_id: "1234567890", event_name: Lead}
"""
_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
          "Gecko) Chrome/131.0.0.0 Safari/537.36")
_PAGES = ("/", "/pricing", "/docs/getting-started", "/blog/launch-week", "/signup")


def say(text: str) -> None:
    print(text, flush=True)


# --- the events ---------------------------------------------------------------------------


def page_event(i: int, at: float, run: str) -> tuple[bytes, bytes]:
    """An analytics.js page call from visitor ``i``, landing from an ad: a gclid for two
    in three, an fbclid for the others and for every fifth as well (~1.4 kB)."""
    anonymous_id = str(uuid.UUID(int=int(run, 16) << 64 | i))
    path = _PAGES[i % len(_PAGES)]
    query = []
    if i % 3:
        query.append(f"gclid=Cj0KCQiA{i:012d}_BhCnARIsAKXw{run}aG8vQ3a9BwE")
    if not i % 3 or not i % 5:
        query.append(f"fbclid=IwAR{i:012d}{run}Xk2PQmN7fL0ZsYc8Vt3uHbJd")
    search = "?" + "&".join([*query, "utm_source=ads", "utm_medium=cpc"])
    url = f"https://www.initech.example{path}{search}"
    stamp = datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")
    page = {"path": path, "referrer": "https://www.google.com/", "search": search,
            "title": f"{path.strip('/').title() or 'Home'} | Initech", "url": url}
    event = {
        "anonymousId": anonymous_id, "channel": "client", "type": "page", "userId": None,
        "messageId": f"ajs-next-{run}-{i}", "timestamp": stamp, "originalTimestamp": stamp,
        "sentAt": stamp, "receivedAt": stamp, "properties": dict(page),
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.72.0"},
            "ip": f"203.0.{i % 250}.{i % 200 + 7}", "locale": "en-US", "page": page,
            "userAgent": _AGENT, "timezone": "Europe/London",
            "userAgentData": {"brands": [{"brand": "Chromium", "version": "131"}],
                              "mobile": False, "platform": "macOS"},
            "campaign": {"name": "winter-launch", "source": "ads", "medium": "cpc"}},
        "integrations": {}, "writeKey": "wk_3fa85f6457174562b3fc2c963f66afa6",
        "version": 2, "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
    }
    return anonymous_id.encode(), orjson.dumps(event)


def produce_pages(bootstrap: str, topic: str, count: int, run: str) -> float:
    """``count`` page events from ``count`` visitors; returns the seconds it took."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 500_000})
    started = time.monotonic()
    at = time.time() - 3600
    for i in range(count):
        key, value = page_event(i, at, run)
        send(producer, topic, value, key)
    producer.flush(300)
    return time.monotonic() - started


# --- watching a process from the outside ----------------------------------------------------


@dataclass
class Sample:
    at: float
    cpu: float  # seconds of CPU the process has used
    rss: int  # resident bytes
    counts: dict[str, int]  # records in each watched topic
    main: tuple[int, int]  # the main thread's ns on a CPU, and runnable without one


@dataclass
class Watched:
    """A child process, sampled every 50 ms: its CPU, peak RSS and topic end offsets."""

    process: subprocess.Popen[bytes]
    log: Path
    topics: list[str]
    bootstrap: str
    samples: list[Sample] = field(default_factory=list)
    peak_rss: int = 0
    _halt: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"bench-probe-{uuid.uuid4()}"})
        parts = [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        try:
            while not self._halt.is_set():
                try:
                    ends = {t: 0 for t in self.topics}
                    for tp in parts:
                        ends[tp.topic] += consumer.get_watermark_offsets(tp, 10, cached=False)[1]
                    stat = Path(f"/proc/{self.process.pid}/stat").read_text()
                    fields = stat.rsplit(")", 1)[1].split()
                    status = Path(f"/proc/{self.process.pid}/status").read_text()
                    pid = self.process.pid
                    running, waiting = Path(f"/proc/{pid}/task/{pid}/schedstat"
                                            ).read_text().split()[:2]
                except (FileNotFoundError, ProcessLookupError):
                    return
                except KafkaException:
                    continue  # a fresh topic without a leader for a moment
                rss = 0
                for line in status.splitlines():  # absent once the process has exited
                    if line.startswith("VmHWM:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
                    elif line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                self.samples.append(Sample(time.time(),
                                           (int(fields[11]) + int(fields[12])) / TICK, rss, ends,
                                           (int(running), int(waiting))))
                time.sleep(0.05)
        finally:
            consumer.close()

    def count(self, topic: str) -> int:
        return self.samples[-1].counts[topic] if self.samples else 0

    def wait_for(self, topic: str, target: int, timeout: float, stall: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        moved, last = time.monotonic(), -1
        while self.count(topic) < target:
            now = time.monotonic()
            if self.count(topic) != last:
                moved, last = now, self.count(topic)
            if now > deadline or now - moved > stall or self.process.poll() is not None:
                raise TimeoutError(f"{topic}: {self.count(topic)} of {target} records after "
                                   f"{now - deadline + timeout:.0f}s (log: {self.log})")
            time.sleep(0.05)

    def window(self, first: str, last: str, total: int) -> dict[str, float]:
        """Rate, CPU per record and cores from when ``first`` (the first hop's output)
        holds 1% of ``total`` until ``last`` (the last hop's) holds all of it: start-up
        and group joining are left out, and every hop of the rest is in (a 10-90% window
        of the last hop alone would catch the stage while it works on one hop only)."""
        start = next(s for s in self.samples if s.counts[first] >= total * 0.01)
        end = next(s for s in self.samples if s.counts[last] >= total)
        records, seconds = total - start.counts[first], end.at - start.at
        cpu = end.cpu - start.cpu
        running, waiting = (b - a for a, b in zip(start.main, end.main, strict=True))
        return {"per_s": records / seconds, "cpu_us": cpu / records * 1e6,
                "cores": cpu / seconds, "seconds": seconds,
                # Of the window, the main thread was on a CPU this share of the time, and
                # runnable without a CPU that share: the rest it waited for something.
                "main_running": running / 1e9 / seconds, "main_starved": waiting / 1e9 / seconds}

    def rss_halves(self, topic: str, total: int) -> tuple[float, float]:
        """Peak RSS (MB) while ``topic`` went to half of ``total``, and after: a process
        whose memory grows with what it has seen is higher in the second."""
        first = [s.rss for s in self.samples if s.counts[topic] < total / 2]
        second = [s.rss for s in self.samples if s.counts[topic] >= total / 2]
        return (round(max(first, default=0) / 2**20, 1),
                round(max(second, default=0) / 2**20, 1))

    def cpu_between(self, start: float, end: float) -> float:
        before = [s.cpu for s in self.samples if s.at <= start] or [self.samples[0].cpu]
        until = [s.cpu for s in self.samples if s.at <= end] or [self.samples[0].cpu]
        return until[-1] - before[-1]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._halt.set()
        self._thread.join(5)
        return code


# --- the runs -------------------------------------------------------------------------------


@dataclass
class Rig:
    bootstrap: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # for the stage and the bare loop

    def topics(self, name: str) -> dict[str, str]:
        """A fresh set of the stage's topics (and one for the bare loop's output)."""
        prefix = f"bench-conv-{name}-{uuid.uuid4().hex[:6]}"
        names = {"events": f"{prefix}.events", "identifies": f"{prefix}.identifies",
                 "prefix": prefix, "by_anon": f"{prefix}.by-anon",
                 "by_person": f"{prefix}.by-person", "anon_state": f"{prefix}.anon-state",
                 "person_state": f"{prefix}.person-state", "outbox": f"{prefix}.outbox",
                 "dlq": f"{prefix}.dlq", "group": f"{prefix}-group"}
        create_topics(self.bootstrap, {names[n]: PARTITIONS for n in (
            "events", "identifies", "by_anon", "by_person", "outbox", "dlq")})
        create_topics(self.bootstrap, {names["anon_state"]: PARTITIONS,
                                       names["person_state"]: PARTITIONS},
                      config={"cleanup.policy": "compact"})
        return names

    def stage(self, names: dict[str, str], state_dir: Path, watch: list[str],
              group: str | None = None) -> Watched:
        audiences = self.workdir / "audiences.yaml"
        audiences.write_text(AUDIENCES)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PROCESSOR_", "CLEARBIT_", "KAFKA_"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "PROCESSOR_CONV_EVENT_TOPICS": names["events"],
            "PROCESSOR_CONV_IDENTIFY_TOPICS": names["identifies"],
            "PROCESSOR_CONV_TOPIC_PREFIX": names["prefix"],
            "PROCESSOR_CONV_OUTPUT_TOPIC": names["outbox"],
            "PROCESSOR_CONV_DLQ_TOPIC": names["dlq"],
            "PROCESSOR_CONV_GROUP_ID": group or names["group"],
            "PROCESSOR_CONV_AUDIENCES_FILE": str(audiences),
            "PROCESSOR_CONV_STATE_DIR": str(state_dir), "PROCESSOR_METRICS_PORT": "0",
            "PROCESSOR_LOG_FORMAT": "json", "PROCESSOR_LOG_LEVEL": "INFO", **self.env,
        })
        return self._spawn([sys.executable, "-m", "processor", "conversions"], env, watch)

    def bare_loop(self, names: dict[str, str], output: str, hop: str | None = None) -> Watched:
        topic = f"{names['prefix']}.{output}"
        relay = ["--relay", hop] if hop else []
        return self._spawn([sys.executable, "-m", "processor.devkit.bare_loop", self.bootstrap,
                            names["events"], topic, f"{names['group']}-{output}", *relay],
                           {**os.environ, **self.env}, [topic, *([hop] if hop else [])])

    def _spawn(self, argv: list[str], env: dict[str, str], watch: list[str]) -> Watched:
        log = self.workdir / f"{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        return Watched(process, log, watch, self.bootstrap)


def _throughput(rig: Rig, names: dict[str, str], count: int, state_dir: Path,
                timeout: float) -> dict[str, Any]:
    stage = rig.stage(names, state_dir, [names["anon_state"], names["by_anon"]])
    try:
        stage.wait_for(names["anon_state"], count, timeout)
    finally:
        code = stage.stop()
    done = stage.window(names["by_anon"], names["anon_state"], count)
    return {"events_per_s": round(done["per_s"]), "cpu_us_per_event": round(done["cpu_us"], 1),
            "cores": round(done["cores"], 2), "window_s": round(done["seconds"], 1),
            "main_thread_running": round(done["main_running"], 2),
            "main_thread_starved": round(done["main_starved"], 2),
            "peak_rss_mb": round(stage.peak_rss / 2**20, 1),
            "peak_rss_mb_halves": stage.rss_halves(names["anon_state"], count), "events": count,
            "exit_code": code, "log": str(stage.log)}


def _bare(rig: Rig, names: dict[str, str], count: int, output: str,
          timeout: float, *, two_hops: bool = False) -> dict[str, Any]:
    """The bare loop on the stage's input topic, with a group and an output of its own
    (``two_hops``: through a topic of its own first, as the page path goes through
    ``by-anon``; its window runs from that topic to the output, as the stage's does)."""
    topic = f"{names['prefix']}.{output}"
    hop = f"{topic}-hop" if two_hops else None
    create_topics(rig.bootstrap, {topic: PARTITIONS, **({hop: PARTITIONS} if hop else {})})
    bare = rig.bare_loop(names, output, hop)
    try:
        bare.wait_for(topic, count, timeout)
    finally:
        bare.stop()
    done = bare.window(hop or topic, topic, count)
    return {"events_per_s": round(done["per_s"]), "cpu_us_per_event": round(done["cpu_us"], 1),
            "cores": round(done["cores"], 2), "window_s": round(done["seconds"], 1),
            "main_thread_running": round(done["main_running"], 2),
            "main_thread_starved": round(done["main_starved"], 2),
            "peak_rss_mb": round(bare.peak_rss / 2**20, 1)}


def _restore(rig: Rig, names: dict[str, str], run: str, expected: int) -> dict[str, Any]:
    """The stage restoring its visitor store from ``names``' anon-state onto an empty
    disk, as a new replica would: one new page event per partition opens each store."""
    state_dir = Path(tempfile.mkdtemp(prefix="bench-restore-", dir=rig.workdir))
    stage = rig.stage(names, state_dir, [names["anon_state"]])
    try:
        producer = Producer({"bootstrap.servers": rig.bootstrap})
        at = time.time()
        # New visitors, routed to every partition of by-anon (33 keys miss one of three
        # with a chance of 1e-5).
        for i in range(33):
            key, value = page_event(10**9 + i, at, run)
            producer.produce(names["events"], value, key)
        producer.flush(30)
        deadline = time.monotonic() + 600
        while _restored_lines(stage.log) < PARTITIONS:
            if time.monotonic() > deadline or stage.process.poll() is not None:
                raise TimeoutError(f"the visitor store was not restored (log: {stage.log})")
            time.sleep(0.2)
    finally:
        stage.stop()
    restores = _restores(stage.log)
    records = sum(r["records"] for r in restores)
    seconds = sum(r["seconds"] for r in restores)
    cpu = sum(stage.cpu_between(r["end"] - r["seconds"], r["end"]) for r in restores)
    return {"records": records, "expected": expected, "seconds": round(seconds, 2),
            "records_per_s": round(records / seconds) if seconds else 0,
            "cores": round(cpu / seconds, 2) if seconds else 0.0,
            "peak_rss_mb": round(stage.peak_rss / 2**20, 1), "partitions": len(restores)}


def _restores(log: Path) -> list[dict[str, Any]]:
    """The visitor store's restores in a stage's JSON log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        text = entry.get("event", "") if isinstance(entry, dict) else ""
        if not text.startswith("restored store visitors["):
            continue
        # "restored store visitors[2]: 333 records from offset 0 to 333 in 0.41s (...)"
        words = text.split()
        end = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        found.append({"records": int(words[3]), "seconds": float(words[11].rstrip("s")),
                      "end": end})
    return found


def _restored_lines(log: Path) -> int:
    return len(_restores(log))


def conversion_figures(bootstrap: str, quick: bool,
                       env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The figures this module's docstring describes, as a dict. ``env``: settings
    (``PROCESSOR_KAFKA_CONSUMER_...``, say) for every stage and bare loop of the run."""
    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    compared = sizes[-1]  # the longest window: the least moved by a moment's load
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-conv-"))
    rig = Rig(bootstrap, workdir, dict(env or {}))
    runs: dict[str, Any] = {}
    bares: list[dict[str, Any]] = []
    two_hops: dict[str, Any] = {"events_per_s": 0, "cpu_us_per_event": 0.0}
    names: dict[str, str] = {}
    run = ""
    for count in sizes:
        run = uuid.uuid4().hex[:8]
        names = rig.topics(str(count))
        fill = produce_pages(bootstrap, names["events"], count, run)
        say(f"   {count:,} page events produced in {fill:.0f}s")
        if count == compared:
            bares.append(_bare(rig, names, count, "bare", timeout=600))
            say(f"   bare loop: {bares[-1]}")
        stage = _throughput(rig, names, count, workdir / f"state-{count}",
                            timeout=max(600.0, count / 200))
        stage["fill_seconds"] = round(fill, 1)
        runs[str(count)] = stage
        say(f"   stage, {count:,} visitors: {stage}")
        if count == compared:
            # Once more after the stage: on a shared machine, how much the others'
            # load moved meanwhile shows in the difference.
            bares.append(_bare(rig, names, count, "bare-again", timeout=600))
            say(f"   bare loop again: {bares[-1]}")
            two_hops = _bare(rig, names, count, "bare-two-hops", timeout=600, two_hops=True)
            say(f"   bare loop through a second topic: {two_hops}")
    restore = _restore(rig, names, run, sizes[-1])
    say(f"   restore: {restore}")
    small, large = (runs[str(size)] for size in sizes)
    page = large
    bare = {key: round(sum(b[key] for b in bares) / len(bares), 1)
            for key in ("events_per_s", "cpu_us_per_event", "cores", "peak_rss_mb")}
    ratio = page["events_per_s"] / bare["events_per_s"] if bare["events_per_s"] else 0.0
    hops_ratio = (page["events_per_s"] / two_hops["events_per_s"]
                  if two_hops["events_per_s"] else 0.0)
    figures: dict[str, Any] = {
        "sizes": list(sizes), "ratio_size": compared,
        "page_path": page, "bare_loop": bare, "bare_loop_runs": bares, "by_size": runs,
        "ratio": round(ratio, 2),
        "bare_two_hops": two_hops, "ratio_to_two_hops": round(hops_ratio, 2),
        "cpu_ratio": round(page["cpu_us_per_event"] / bare["cpu_us_per_event"], 2),
        "ratio_target": ">= 0.5", "ratio_met": ratio >= 0.5,
        "peak_rss_mb": {str(size): runs[str(size)]["peak_rss_mb"] for size in sizes},
        "rss_ratio_large_to_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
        # Flat: the largest run no higher in its second half than in its first (the
        # smaller run's peak may be lower: the caches are still filling at 20k).
        "rss_met": (max(r["peak_rss_mb"] for r in runs.values()) < 300
                    and large["peak_rss_mb_halves"][1] <= 1.1 * large["peak_rss_mb_halves"][0]),
        "restore": restore, "restore_met": restore["records_per_s"] >= 100_000,
        "target": "page path >= 0.5x the bare loop; peak RSS flat, < 300 MB; restore >= "
                  "100,000 records/s",
        "cpu_count": os.cpu_count(), "env": dict(env or {}),
        # Other processes' demand on the same cores (1-minute load), before and after.
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "workdir": str(workdir),
    }
    figures["met"] = figures["ratio_met"] and figures["rss_met"] and figures["restore_met"]
    return figures


def table(figures: dict[str, Any]) -> str:
    page, bare, restore = figures["page_path"], figures["bare_loop"], figures["restore"]
    before, after = figures["load_average"]
    bare_runs = ", ".join(f"{b['events_per_s']:,}/s" for b in figures["bare_loop_runs"])

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        f"page path ({figures['ratio_size']:,} visitors): {page['events_per_s']:,} events/s, "
        f"{page['cpu_us_per_event']} us CPU/event, {page['cores']} cores; bare loop "
        f"{bare['events_per_s']:,.0f}/s, {bare['cpu_us_per_event']} us, {bare['cores']} cores "
        f"(the mean of {bare_runs})",
        f"  ratio to the bare loop: {figures['ratio']}x by rate, {figures['cpu_ratio']}x the "
        f"CPU per event (target >= 0.5x: {met(figures['ratio_met'])})",
        f"  the bare loop through a second topic (the page path's records in and out): "
        f"{figures['bare_two_hops']['events_per_s']:,}/s, "
        f"{figures['bare_two_hops']['cpu_us_per_event']} us; the stage "
        f"{figures['ratio_to_two_hops']}x its rate",
        f"  main thread on a CPU / runnable without one: stage {page['main_thread_running']} / "
        f"{page['main_thread_starved']} of the time",
    ]
    for size, run in figures["by_size"].items():
        halves = " then ".join(str(h) for h in run["peak_rss_mb_halves"])
        lines.append(f"{int(size):>9,} visitors: peak RSS {run['peak_rss_mb']} MB ({halves} MB "
                     "in the first and second half), "
                     f"{run['events_per_s']:,} events/s, {run['cpu_us_per_event']} us "
                     f"CPU/event, {run['cores']} cores")
    small, large = figures["sizes"]
    lines += [
        f"  peak RSS {large:,} / {small:,} visitors: {figures['rss_ratio_large_to_small']}x; "
        f"target flat (the {large:,} run's second half no higher than its first) and < 300 "
        f"MB: {met(figures['rss_met'])}",
        f"restore of the visitor store: {restore['records']:,} records in "
        f"{restore['seconds']}s, {restore['records_per_s']:,} records/s, {restore['cores']} "
        f"cores, peak RSS {restore['peak_rss_mb']} MB (target >= 100,000/s: "
        f"{met(figures['restore_met'])})",
        f"{figures['cpu_count']} cores; load average {before} then {after}"
        + (f"; settings {figures['env']}" if figures["env"] else ""),
    ]
    return "\n".join(lines)


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("PROCESSOR_"):
        raise argparse.ArgumentTypeError(f"expected PROCESSOR_...=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_conversions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k and 100k visitors")
    parser.add_argument("--bootstrap", help="a broker to use (default: start a local one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--env", type=_setting, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="a setting for every stage and bare loop of the run (repeatable)")
    args = parser.parse_args(argv)
    if args.bootstrap:
        figures = conversion_figures(args.bootstrap, args.quick, dict(args.env))
    else:
        with LocalKafka() as broker:
            figures = conversion_figures(broker.bootstrap_servers, args.quick, dict(args.env))
    say(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
