"""The stage's producer on a real broker: what it counts as a record the broker refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from processor.adapters.kafka import KafkaSink

pytestmark = pytest.mark.integration


def transactional_sink(bootstrap: str) -> KafkaSink:
    # A long linger keeps the records queued in the client when the transaction aborts.
    return KafkaSink({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                      "acks": "all", "linger.ms": 5000,
                      "transactional.id": f"sink-test-{uuid.uuid4().hex[:8]}"}, {})


def test_records_of_an_aborted_transaction_are_not_refusals(
        kafka_bootstrap: str, kafka_topics: Callable[..., str]) -> None:
    # After a rebalance aborts a transaction, librdkafka reports its queued records as
    # purged. The stage rewinds and produces them again: counting them as refused made
    # the next turn stop the stage with a DeliveryError.
    topic = kafka_topics("out", 1)
    sink = transactional_sink(kafka_bootstrap)
    try:
        sink.begin()
        for i in range(50):
            sink.produce(topic, None, b"record-%d" % i, None, None)
        sink.abort(30)
        assert sink.flush(10) == 0
        sink.poll(0.5)
        assert sink.refused == []
        # The producer goes on: the next transaction commits.
        sink.begin()
        sink.produce(topic, None, b"after", None, None)
        sink.commit_transaction({}, None, 30)
        assert sink.refused == []
    finally:
        sink.close()
