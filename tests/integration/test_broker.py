"""The session's broker is a real Kafka that the rest of the suite can rely on.

Each test checks a property the processor depends on and that a stand-in broker
might fake: consumer groups over several partitions, transactions that hide
aborted records from read_committed consumers, and (local broker only) data and
committed offsets that survive a broker restart on the same address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from processor.devkit.broker import LocalKafka

pytestmark = pytest.mark.integration


@contextmanager
def _consumer(bootstrap: str, topic: str, group: str,
              isolation: str = "read_uncommitted") -> Iterator[Consumer]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.subscribe([topic])
    try:
        yield consumer
    finally:
        consumer.close()


def _poll(consumer: Consumer, done: Callable[[list[Message]], bool],
          timeout: float = 30.0) -> list[Message]:
    """Consume until ``done`` says so; fails the test after ``timeout`` seconds."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        assert time.monotonic() < deadline, f"only {len(received)} records in {timeout}s"
        for message in consumer.consume(num_messages=500, timeout=0.5):
            if message.error() is not None:
                raise KafkaException(message.error())
            received.append(message)
    return received


def _values(messages: list[Message]) -> list[str]:
    return [(message.value() or b"").decode() for message in messages]


def _produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, key=value.encode(), value=value.encode())
    assert producer.flush(30) == 0


def test_group_consumes_everything_produced_to_three_partitions(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str) -> None:
    topic = kafka_topics("events", 3)
    sent = [f"record-{index}" for index in range(300)]
    _produce(kafka_bootstrap, topic, sent)

    with _consumer(kafka_bootstrap, topic, f"{unique_name}-group") as consumer:
        received = _poll(consumer, lambda got: len(got) >= len(sent))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)

    assert sorted(_values(received)) == sorted(sent)
    assert {message.partition() for message in received} == {0, 1, 2}
    assert sum(part.offset for part in committed) == len(sent)


def test_read_committed_sees_committed_transactions_only(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str) -> None:
    topic = kafka_topics("tx", 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": f"{unique_name}-tx"})
    producer.init_transactions(30)
    for outcome in ("committed", "aborted", "last"):
        producer.begin_transaction()
        for index in range(5 if outcome != "last" else 1):
            producer.produce(topic, value=f"{outcome}-{index}".encode())
        if outcome == "aborted":
            assert producer.flush(30) == 0  # else the abort drops them before they're sent
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)

    def saw_last(got: list[Message]) -> bool:
        return "last-0" in _values(got)

    with _consumer(kafka_bootstrap, topic, f"{unique_name}-committed",
                   "read_committed") as consumer:
        committed_view = _values(_poll(consumer, saw_last))
    with _consumer(kafka_bootstrap, topic, f"{unique_name}-uncommitted") as consumer:
        uncommitted_view = _values(_poll(consumer, saw_last))

    assert committed_view == [f"committed-{i}" for i in range(5)] + ["last-0"]
    # The aborted records are really in the log: only the isolation level hides them.
    assert [v for v in uncommitted_view if v.startswith("aborted")] == [
        f"aborted-{i}" for i in range(5)]


def test_restart_keeps_records_and_committed_offsets(
        local_kafka: LocalKafka, kafka_topics: Callable[..., str], unique_name: str) -> None:
    bootstrap = local_kafka.bootstrap_servers
    topic = kafka_topics("durable", 1)
    group = f"{unique_name}-group"
    _produce(bootstrap, topic, [f"before-{i}" for i in range(10)])
    with _consumer(bootstrap, topic, group) as consumer:
        first = _poll(consumer, lambda got: len(got) >= 4)[:4]
        consumer.commit(message=first[-1], asynchronous=False)
    survivor = Producer({"bootstrap.servers": bootstrap})  # connected across the restart

    local_kafka.restart()

    assert local_kafka.bootstrap_servers == bootstrap
    survivor.produce(topic, value=b"after-0")
    assert survivor.flush(60) == 0
    with _consumer(bootstrap, topic, group) as consumer:
        resumed = _values(_poll(consumer, lambda got: "after-0" in _values(got)))
    with _consumer(bootstrap, topic, f"{unique_name}-fresh") as consumer:
        everything = _values(_poll(consumer, lambda got: len(got) >= 11))

    assert _values(first) == [f"before-{i}" for i in range(4)]
    assert resumed == [f"before-{i}" for i in range(4, 10)] + ["after-0"]
    assert everything == [f"before-{i}" for i in range(10)] + ["after-0"]
