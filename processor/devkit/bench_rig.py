"""What the benchmark measures with: processes watched from outside, topics, inputs, the
output topic's progress, and the broker, server and registry to run against.

``processor.devkit.bench`` is the command; ``processor.devkit.bench_scenarios`` the
scenarios, which take everything they need from here.
"""

from __future__ import annotations

import io
import os
import platform
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaException,
    Producer,
    TopicPartition,
)

from processor.devkit.broker import KAFKA_VERSION, LocalKafka, admin_client, create_topics
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import analytics_identify, person_email

KEY = "sk_test_local"
ROOT = Path(__file__).resolve().parents[2]
# Quix Streams pins an older confluent-kafka than the project's: a venv of its own.
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
TICK = os.sysconf("SC_CLK_TCK")
# The code issue 14 measured (2026-11-23): its CPU per cached event is what the issue's
# target halves, so the cached scenario runs it next to today's on the same events.
BEFORE_ISSUE_14 = "5f4e6b5"


def say(text: str) -> None:
    print(text, flush=True)


# --- measuring a process from the outside ------------------------------------------------


class ProcessWatch(threading.Thread):
    """Samples a process's CPU time every 10 ms and its threads' schedules every 100 ms
    (for figures over a window), and reads its peak RSS.

    A thread's time on a CPU plus its time runnable but waiting for one
    (``/proc/<pid>/task/<tid>/schedstat``) is how busy it was, whatever the machine's
    other work took. A process whose busiest thread (the stage's loop, or the lookup
    pool's event loop) was busy less than the whole window slept some of it.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (wall time, cpu seconds)
        # (wall time, busy seconds by thread id), every 100 ms
        self.threads: list[tuple[float, dict[int, float]]] = []
        self.rss: list[tuple[float, int]] = []  # (wall time, resident bytes)
        # (wall time, CPU ticks) of the whole machine, all and idle, every 100 ms
        self.machine_ticks: list[tuple[float, float]] = []
        self.idle_ticks: list[tuple[float, float]] = []
        self.peak_rss = 0
        self._halt = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self._halt.is_set():
            try:
                fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / TICK
                self.samples.append((time.time(), cpu))
                if turn % 10 == 0:
                    self.threads.append((time.time(), self._thread_busy()))
                    now = time.time()
                    ticks, idle = _machine_ticks()
                    self.machine_ticks.append((now, ticks))
                    self.idle_ticks.append((now, idle))
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
                    elif line.startswith("VmRSS:"):
                        self.rss.append((time.time(), int(line.split()[1]) * 1024))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return
            turn += 1
            time.sleep(0.01)

    def _thread_busy(self) -> dict[int, float]:
        busy = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                running, waiting = (task / "schedstat").read_text().split()[:2]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue  # a thread that ended meanwhile
            busy[int(task.name)] = (int(running) + int(waiting)) / 1e9
        return busy

    def cpu_between(self, start: float, end: float) -> float:
        return _between(self.samples, start, end)

    def busiest_thread_between(self, start: float, end: float) -> float:
        """Seconds the busiest thread ran or waited for a CPU over the window."""
        first = next((b for t, b in reversed(self.threads) if t <= start),
                     self.threads[0][1] if self.threads else {})
        last = next((b for t, b in reversed(self.threads) if t <= end), first)
        return max((seconds - first.get(tid, 0.0) for tid, seconds in last.items()),
                   default=0.0)

    def machine_idle_between(self, start: float, end: float) -> float:
        """The share of the machine's CPU time (all cores) that was idle over the window."""
        total = _between(self.machine_ticks, start, end)
        return _between(self.idle_ticks, start, end) / total if total > 0 else 0.0

    def peak_rss_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.rss if start <= t <= end), default=0)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def _between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """How much a cumulative figure grew between two moments (the samples at or before
    each)."""
    def at(moment: float) -> float:
        before = [value for t, value in samples if t <= moment]
        return before[-1] if before else (samples[0][1] if samples else 0.0)
    return at(end) - at(start)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    watch: ProcessWatch
    log: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self.watch.stop()
        return code


@dataclass
class Bench:
    bootstrap: str
    clearbit: ClearbitServer
    workdir: Path
    # Added to every stage's and bare loop's environment (``--env``): the same run with a
    # setting changed, e.g. a librdkafka property through PROCESSOR_KAFKA_CONSUMER_*.
    stage_env: dict[str, str] = field(default_factory=dict)

    def topics(self, name: str, partitions: int = 3,
               config: dict[str, str] | None = None) -> dict[str, str]:
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        names = {"input": f"{prefix}-in", "output": f"{prefix}-out", "dlq": f"{prefix}-dlq",
                 "group": f"{prefix}-group"}
        create_topics(self.bootstrap, {names["input"]: partitions}, config=config)
        create_topics(self.bootstrap, {names["output"]: partitions, names["dlq"]: 1},
                      config={"message.timestamp.type": "LogAppendTime"})
        return names

    def start_processor(self, names: dict[str, str], **env: str) -> Running:
        return self._start_stage(names, env)

    def start_processor_at(self, source: Path, names: dict[str, str]) -> Running:
        """``processor run`` of another version: ``source`` holds its ``processor`` package
        (``code_at``)."""
        return self._start_stage(names, {}, source)

    def _start_stage(self, names: dict[str, str], env: dict[str, str],
                     source: Path | None = None) -> Running:
        environment = {k: v for k, v in os.environ.items()
                       if not k.startswith(("PROCESSOR_", "CLEARBIT_"))}
        environment.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "PROCESSOR_INPUT_TOPIC": names["input"],
            "PROCESSOR_OUTPUT_TOPIC": names["output"], "PROCESSOR_DLQ_TOPIC": names["dlq"],
            "PROCESSOR_GROUP_ID": names["group"], "CLEARBIT_API_KEY": KEY,
            "CLEARBIT_BASE_URL": self.clearbit.url, "PROCESSOR_METRICS_PORT": "0",
            "PROCESSOR_LOG_FORMAT": "json", "PROCESSOR_LOG_LEVEL": "WARNING",
            "CLEARBIT_RATE_LIMIT_PER_MINUTE": "0",
        })
        environment.update(self.stage_env)
        environment.update(env)
        return self._spawn([sys.executable, "-m", "processor", "run"], environment, names,
                           cwd=source)

    def start_bare_loop(self, names: dict[str, str], *, enriched: bool = False) -> Running:
        """The baseline: consume and produce with the stage's own client settings
        (``enriched``: writing the stage's outputs, see ``processor.devkit.bare_loop``)."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSOR_")}
        environment.update(self.stage_env)
        return self._spawn([sys.executable, "-m", "processor.devkit.bare_loop", self.bootstrap,
                            names["input"], names["output"], names["group"],
                            *(["--enriched"] if enriched else [])],
                           environment, names)

    def start_pool_peer(self, names: dict[str, str]) -> Running:
        """The job as a plain consumer and a 32-thread pool (``processor.devkit.pool_peer``)."""
        return self._start_peer(sys.executable, "pool_peer", names)

    def start_quix_peer(self, names: dict[str, str]) -> Running:
        """The job as a Quix Streams application (``processor.devkit.quix_peer``), from the
        venv ``make quix-peer`` builds (``QUIX_PYTHON``); ``FileNotFoundError`` without it."""
        if not QUIX_PYTHON.exists():
            raise FileNotFoundError(f"{QUIX_PYTHON} is missing: make quix-peer builds it")
        return self._start_peer(str(QUIX_PYTHON), "quix_peer", names)

    def _start_peer(self, python: str, module: str, names: dict[str, str]) -> Running:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSOR_")}
        environment["PYTHONPATH"] = str(ROOT)  # the project, for a venv that lacks it
        return self._spawn([python, "-m", f"processor.devkit.{module}", self.bootstrap,
                            names["input"], names["output"], names["group"], self.clearbit.url,
                            KEY], environment, names)

    def _spawn(self, argv: list[str], env: dict[str, str], names: dict[str, str],
               cwd: Path | None = None) -> Running:
        log = self.workdir / f"{names['group']}-{uuid.uuid4().hex[:4]}.log"
        with log.open("wb") as out:
            # ``python -m`` imports from its working directory first: ``cwd`` picks the code.
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=cwd)
        watch = ProcessWatch(process.pid)
        watch.start()
        return Running(process, watch, log)


def code_at(commit: str, workdir: Path, repo: Path = ROOT) -> Path:
    """A folder holding the ``processor`` package as it was at ``commit`` in ``repo``
    (``git archive``); ``RuntimeError`` saying why when git or the commit is not there
    (a shallow clone)."""
    target = workdir / f"code-{commit}"
    if (target / "processor").is_dir():
        return target
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "processor"],
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as error:
        detail = (getattr(error, "stderr", b"") or b"").decode(errors="replace").strip()
        raise RuntimeError(f"git archive {commit} failed: {detail or error}") from error
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


# --- input and output -------------------------------------------------------------------


def produce(bootstrap: str, topic: str, events: Iterator[tuple[bytes, Any]],
            rate: float | None = None,
            encode: Callable[[Any], bytes] = orjson.dumps) -> int:
    """Produce events as fast as possible, or at ``rate`` per second."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 500_000})
    count = 0
    started = time.monotonic()
    for key, event in events:
        while True:
            try:
                producer.produce(topic, encode(event), key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 5000 == 0:
            producer.poll(0)
        if rate and count % 50 == 0:
            ahead = count / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(120)
    return count


def cached_events(count: int, distinct: int, offset: int = 0,
                  size: str = "small") -> Iterator[tuple[bytes, Any]]:
    """Events over ``distinct`` emails and 1,000 keys, analytics.js-shaped, of a size of
    ``processor.devkit.samples.EVENT_SIZES``."""
    for i in range(offset, offset + count):
        person = i % distinct
        user = f"user-{i % 1000}"
        yield (user.encode(), analytics_identify(i, person_email(person), user_id=user,
                                                 message_id=f"b-{i}", size=size))


def new_email_events(count: int, tag: str) -> Iterator[tuple[bytes, Any]]:
    for i in range(count):
        yield (f"u-{i}".encode(), analytics_identify(
            i, f"person{i}.{tag}@bench{i % 97}.example", user_id=f"u-{i}",
            message_id=f"{tag}-{i}", size="medium"))


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1]
                   for p in metadata.topics[topic].partitions)
    finally:
        consumer.close()


def _end_offsets_or_zero(bootstrap: str, topic: str) -> int:
    try:
        return end_offsets(bootstrap, topic)
    except KafkaException:  # a fresh topic's leader is not elected yet
        return 0


class Progress:
    """The output topic's record count over time, polled every 20 ms from outside: the
    broker stamps a whole batch with one time, so record timestamps cannot give rates."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap,
                                   "group.id": f"progress-{uuid.uuid4()}"})
        metadata = self._consumer.list_topics(topic, timeout=30)
        self._parts = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        self.points: list[tuple[float, int]] = []

    def count(self) -> int:
        """Records in the topic now; the last count while a fresh topic's partition has
        no leader yet (the broker answers NOT_LEADER_FOR_PARTITION for a moment)."""
        try:
            return sum(self._consumer.get_watermark_offsets(p, 10, cached=False)[1]
                       for p in self._parts)
        except KafkaException:
            return self.points[-1][1] if self.points else 0

    def follow(self, target: int, timeout: float, stall: float = 60.0) -> None:
        """Until ``target`` records are out; gives up after ``timeout`` seconds, or after
        ``stall`` seconds without a new record."""
        deadline = time.monotonic() + timeout
        moved, last = time.monotonic(), -1
        try:
            while True:
                seen = self.count()
                self.points.append((time.time(), seen))
                if seen >= target:
                    return
                now = time.monotonic()
                if seen != last:
                    moved, last = now, seen
                if now > deadline or now - moved > stall:
                    raise TimeoutError(f"only {seen} of {target} outputs after "
                                       f"{now - deadline + timeout:.0f}s")
                time.sleep(0.02)
        finally:
            self._consumer.close()

    def window(self, low: float = 0.1, high: float = 0.9) -> tuple[float, float, int]:
        """(start, end, records) between the moments ``low`` and ``high`` of the total were
        out."""
        total = self.points[-1][1]
        start = next(p for p in self.points if p[1] >= total * low)
        end = next(p for p in self.points if p[1] >= total * high)
        return start[0], end[0], end[1] - start[1]


def wait_for_members(bootstrap: str, group: str, members: int, partitions: int,
                     timeout: float = 90.0) -> None:
    """Wait until ``group`` is stable with ``members`` members that hold ``partitions``
    partitions between them: a run that starts before then measures one process working
    while the others wait to join."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    seen = "no description"
    while time.monotonic() < deadline:
        try:
            group_description = admin.describe_consumer_groups([group])[group].result(10)
        except KafkaException as error:
            seen = str(error)
        else:
            held = sum(len(m.assignment.topic_partitions) for m in group_description.members)
            seen = (f"{group_description.state.name}, {len(group_description.members)} "
                    f"members, {held} partitions")
            if (group_description.state == ConsumerGroupState.STABLE
                    and len(group_description.members) == members and held == partitions):
                return
        time.sleep(0.2)
    raise TimeoutError(f"group {group} not stable with {members} members after "
                       f"{timeout:.0f}s ({seen})")


def wait_for_outputs(bootstrap: str, topic: str, count: int, timeout: float) -> None:
    """Wait until ``topic`` holds ``count`` records."""
    deadline = time.monotonic() + timeout
    while _end_offsets_or_zero(bootstrap, topic) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: fewer than {count} records after {timeout:.0f}s")
        time.sleep(0.25)


@contextmanager
def kafka(version: str = KAFKA_VERSION) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, what they are): KAFKA_BOOTSTRAP_SERVERS if set, else the local
    broker of ``version`` (as the tests do)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given, f"KAFKA_BOOTSTRAP_SERVERS={given}"
        return
    with LocalKafka(version=version) as broker:
        yield broker.bootstrap_servers, f"local Apache Kafka {version}"


@contextmanager
def schema_registry() -> Iterator[str]:
    """SCHEMA_REGISTRY_URL if set, else the local Apicurio Registry (as the tests do)."""
    given = os.environ.get("SCHEMA_REGISTRY_URL")
    if given:
        yield given
        return
    from processor.devkit.registry import LocalRegistry  # noqa: PLC0415 - Avro only

    with LocalRegistry() as registry:
        yield registry.url


Scenario = Callable[[Bench, bool], dict[str, Any]]


def machine() -> dict[str, Any]:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def _machine_ticks() -> tuple[int, int]:
    """All CPU ticks of the machine so far, and the idle ones (idle and iowait)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def machine_idle_share(running: list[Running], start: float, end: float) -> float:
    """The share of the machine's CPU that was idle over the window."""
    return running[0].watch.machine_idle_between(start, end)


def cores_between(running: list[Running], start: float, end: float) -> float:
    """Cores the processes used on average over the window (all their threads)."""
    return sum(p.watch.cpu_between(start, end) for p in running) / (end - start)


def busiest_thread_share(running: list[Running], start: float, end: float) -> float:
    """How busy the processes' busiest threads were over the window, as a share of it
    (the mean over the processes): running, or runnable while the machine's other work
    held the CPUs. Below 1, the process slept some of the time."""
    busy = [p.watch.busiest_thread_between(start, end) / (end - start) for p in running]
    return sum(busy) / len(busy)
