"""Helpers for tests on the real broker: run the stage in-process, produce, read back."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processor.entrypoints.bootstrap import Assembly, assemble, preflight
from processor.entrypoints.settings import Settings, load

API_KEY = "sk_test_local"


@dataclass
class Names:
    """Topic and group names of one test, unique on the shared broker."""

    input: str
    output: str
    dlq: str
    group: str

    def settings(self, bootstrap: str, base_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "bootstrap_servers": bootstrap, "input_topic": self.input,
            "output_topic": self.output, "dlq_topic": self.dlq, "group_id": self.group,
            "clearbit_api_key": API_KEY, "clearbit_base_url": base_url,
            "metrics_port": 0, "commit_interval": 0.2, "lag_interval": 0.5,
            "shutdown_timeout": 10.0,
        }
        values.update(overrides)
        return load(values)


@dataclass
class RunningStage:
    assembly: Assembly
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def sensor(self) -> Any:
        return self.assembly.sensor


@contextlib.contextmanager
def running_stage(settings: Settings, *, expect_failure: bool = False) -> Iterator[RunningStage]:
    """The stage on a thread (as ``processor run`` would run it), stopped on exit."""
    preflight(settings)
    assembly = assemble(settings)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assembly.stage.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name="stage-under-test", daemon=True)
    if assembly.metrics:
        assembly.metrics.start()
    assembly.lag.start()
    thread.start()
    running = RunningStage(assembly, thread, errors)
    try:
        yield running
    finally:
        assembly.stage.request_stop()
        thread.join(60)
        assembly.lag.stop()
        if assembly.metrics:
            assembly.metrics.stop()
        assert not thread.is_alive(), "the stage did not stop within 60 s"
        if errors and not expect_failure:
            raise errors[0]


def new_producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "linger.ms": 5})


def send(producer: Producer, topic: str, items: Iterable[tuple[bytes | None, Any]]) -> int:
    """Hand (key, value) pairs to ``producer``; dict values are JSON-encoded. Returns how
    many; the caller flushes."""
    count = 0
    for key, value in items:
        raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
        producer.produce(topic, raw, key)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    return count


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, Any]]) -> int:
    """Produce (key, value) pairs and wait for the broker to confirm them."""
    producer = new_producer(bootstrap)
    count = send(producer, topic, items)
    assert producer.flush(30) == 0
    return count


def read(bootstrap: str, topics: list[str], *, until: Callable[[list[Message]], bool],
         timeout: float = 60.0, read_committed: bool = True,
         settle: float = 0.0) -> list[Message]:
    """Read ``topics`` from the beginning until ``until(messages)`` holds or time runs out,
    then ``settle`` seconds more (so that extra records, duplicates say, show up too)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
    })
    consumer.subscribe(topics)
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages) and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(500, 0.2) if m.error() is None)
        settled = time.monotonic() + settle
        while time.monotonic() < settled:
            messages.extend(m for m in consumer.consume(500, 0.2) if m.error() is None)
    finally:
        consumer.close()
    return messages


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """The group's commits reach the end of every partition that has records (not yet,
    when the broker cannot answer for the group right now: its coordinator is moving)."""
    ends = end_offsets(bootstrap, topic, partitions)
    try:
        committed = committed_offsets(bootstrap, group, topic, partitions)
    except KafkaException as error:
        if error.args[0].retriable() or error.args[0].code() == KafkaError.NOT_COORDINATOR:
            return False
        raise
    return all(committed[p] == end for p, end in ends.items() if end > 0)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def count_of(messages: list[Message], topic: str) -> int:
    return sum(1 for m in messages if m.topic() == topic)


def headers_of(message: Message) -> dict[str, str]:
    return {k: (v if isinstance(v, bytes) else (v or "").encode()).decode(errors="replace")
            for k, v in (message.headers() or [])}


def sample(sensor: Any, name: str, **labels: str) -> float:
    """The current value of one series in the stage's own registry (0 when absent)."""
    value = sensor.registry.get_sample_value(name, labels or None)
    return float(value or 0.0)


def read_all(bootstrap: str, topics: list[str], *, read_committed: bool = True,
             timeout: float = 120.0) -> list[Message]:
    """Everything in ``topics`` up to their current end (each partition to its high
    watermark, or to its last stable offset when reading committed only)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"auditor-{uuid.uuid4()}",
        "enable.auto.commit": False, "enable.partition.eof": True,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
    })
    messages: list[Message] = []
    try:
        todo = set()
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=30)
            for partition in metadata.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
                if high > low:
                    todo.add((topic, partition))
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {sorted(todo)} to the end in {timeout}s")
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    todo.discard((message.topic(), message.partition()))
    finally:
        consumer.close()
    return messages


def left_to_read(bootstrap: str, group: str, topics: list[str]) -> int:
    """How many committed records of ``topics`` lie past ``group``'s committed offsets:
    0 once the group has processed everything. Counted by reading rather than from end
    offsets, which on a topic written in transactions lie past the commit markers."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in probe.list_topics(topic, timeout=30).topics[topic].partitions]
        committed = probe.committed(partitions, 30)
    finally:
        probe.close()
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"left-{uuid.uuid4()}",
                       "enable.auto.commit": False, "enable.partition.eof": True,
                       "isolation.level": "read_committed"})
    try:
        starts = []
        for tp in committed:
            low, high = reader.get_watermark_offsets(tp, 30)
            start = tp.offset if tp.offset >= 0 else low
            if start < high:  # past the end there is nothing to read (nor an EOF event)
                starts.append(TopicPartition(tp.topic, tp.partition, start))
        reader.assign(starts)
        todo = {(tp.topic, tp.partition) for tp in starts}
        left = 0
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for message in reader.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    left += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    todo.discard((message.topic(), message.partition()))
        if todo:
            raise AssertionError(f"could not read {sorted(todo)} to the end in 60s")
        return left
    finally:
        reader.close()


class Trickle(threading.Thread):
    """Produces the inputs over ``seconds``, so that what a test does to the stages
    (kills, joins, leaves) happens while they arrive. ``inputs``: (key, value) pairs by
    topic, each topic spread over the same schedule, in its order."""

    def __init__(self, bootstrap: str, inputs: Mapping[str, Sequence[tuple[bytes | None, Any]]],
                 seconds: float) -> None:
        super().__init__(name="trickle", daemon=True)
        self.bootstrap = bootstrap
        self.inputs = inputs
        self.seconds = seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        chunks = max(1, int(self.seconds * 4))
        # One producer for the whole run, paced by the clock: a producer per chunk spent
        # longer starting (its idempotence id) than the schedule allowed at CHAOS_SCALE=5.
        producer = new_producer(self.bootstrap)
        started = time.monotonic()
        try:
            for chunk in range(chunks):
                for topic, items in self.inputs.items():
                    size = -(-len(items) // chunks)
                    send(producer, topic, items[chunk * size:(chunk + 1) * size])
                producer.poll(0)
                time.sleep(max(0.0, started + (chunk + 1) * self.seconds / chunks
                               - time.monotonic()))
            assert producer.flush(60) == 0, "the broker did not confirm every input"
        except BaseException as error:  # noqa: BLE001 - re-raised by finish()
            self.error = error

    def finish(self) -> None:
        self.join(self.seconds + 120)
        if self.is_alive():
            # Counting inputs that were never produced as "lost" would blame the stage.
            raise AssertionError(
                f"the inputs were not all produced within {self.seconds + 120:.0f}s")
        if self.error:
            raise self.error
