"""The producer's sizes for the topics a stage writes to (``size_producer``), held to a
real librdkafka producer: no broker is needed for what it queues locally."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer

from processor.adapters.kafka import PRODUCER_QUEUE_BYTES, size_producer

NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 60_000}


def queued_until_full(config: dict[str, Any], size: int) -> int:
    producer = Producer({**NOWHERE, **config})
    queued = 0
    try:
        while queued < 4 * PRODUCER_QUEUE_BYTES:
            producer.produce("outputs", b"x" * size)
            queued += size
    except BufferError:
        return queued
    finally:
        producer.purge()
        producer.flush(1)
    raise AssertionError("the producer took four times its bound without refusing")


def test_the_outputs_waiting_for_the_broker_are_bounded_in_bytes() -> None:
    config: dict[str, Any] = {}
    size_producer(config, {}, [1_000_000])
    assert config["message.max.bytes"] == 1_000_000
    # 5.4 kB outputs, as the cached path writes: refused once about 32 MiB wait.
    queued = queued_until_full(config, 5400)
    assert PRODUCER_QUEUE_BYTES * 0.95 <= queued <= PRODUCER_QUEUE_BYTES * 1.05


def test_a_record_of_the_largest_size_always_fits_in_the_queue() -> None:
    config: dict[str, Any] = {}
    size_producer(config, {}, [40_000_000, 1_000_000])
    assert config["message.max.bytes"] == 40_000_000
    assert config["batch.size"] == 1_000_000
    # Two of the largest, so that one fits however much else is queued below the bound.
    assert queued_until_full(config, 39_000_000) == 2 * 39_000_000


@pytest.mark.parametrize("name", ["queue.buffering.max.kbytes", "message.max.bytes",
                                  "batch.size"])
def test_a_pass_through_variable_keeps_its_value(name: str) -> None:
    config: dict[str, Any] = {name: 777}
    size_producer(config, {name: "PROCESSOR_KAFKA_PRODUCER_X"}, [1_000_000])
    assert config[name] == 777
