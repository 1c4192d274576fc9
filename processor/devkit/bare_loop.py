"""The benchmark's baseline: a bare confluent-kafka loop that consumes records and
produces them again, with the stage's own consumer and producer settings (its
``kafka_config``, ``PROCESSOR_KAFKA_*`` overrides included), so that a setting
that holds the stage back holds this loop back too. The stage's cached path is
measured against this in the same run, on the same events.

    python -m processor.devkit.bare_loop BOOTSTRAP INPUT OUTPUT GROUP [--enriched]
        [--relay HOP]

It decodes each value with orjson and re-encodes it, as a minimal JSON stage
would, and stores the offsets of each batch once produced; it stops on SIGTERM.

``--enriched`` writes what the stage writes instead of the input: an identify with the
email's ``clearbit_`` traits, pre-encoded once per email from the records the
benchmark's Clearbit-compatible server answers with, and spliced in. The stage's
outputs are several times its inputs (a person and a company record), so this is
the same traffic on the broker without any of the stage's work: a bound on what any
implementation of the job could do there.

``--relay HOP`` takes each record through a second topic on its way, as the
conversions stage's page path does (router, repartition topic, visitor task,
changelog): input records go to HOP, HOP's records to OUTPUT, in one process with one
consumer and one producer, so twice the records in and out for each event.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer
from pydantic import SecretStr

from processor.devkit.clearbit_records import combined_body
from processor.devkit.peer_job import prepared
from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.settings import Settings


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group = argv[:4]
    options = argv[4:]
    enriched = "--enriched" in options
    hop = options[options.index("--relay") + 1] if "--relay" in options else None
    traits: dict[str, orjson.Fragment | None] = {}
    stop = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    settings = Settings(bootstrap_servers=bootstrap, group_id=group,
                        clearbit_api_key=SecretStr("sk_bare_loop"))
    consumer_config, _ = kafka_config(settings, "consumer")
    producer_config, _ = kafka_config(settings, "producer")
    # Positions stored by hand after each batch, committed in the background.
    consumer = Consumer({**consumer_config, "enable.auto.commit": True})
    producer = Producer(producer_config)
    consumer.subscribe([source] if hop is None else [source, hop])
    while not stop:
        messages = consumer.consume(500, 0.1)
        for message in messages:
            if message.error() is not None:
                continue
            event = orjson.loads(message.value() or b"{}")
            value = enriched_output(event, traits) if enriched else orjson.dumps(event)
            target = hop if hop is not None and message.topic() == source else sink
            send(producer, target, value, message.key())
        producer.poll(0)
        store_batch(consumer, messages)
    producer.flush(30)
    consumer.close()
    return 0


def send(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


def store_batch(consumer: Consumer, messages: list[Message]) -> None:
    """Store the position after each partition's last record of the batch."""
    last = {(m.topic(), m.partition()): m for m in messages}
    for message in last.values():
        consumer.store_offsets(message=message)


def enriched_output(event: Any, traits: dict[str, orjson.Fragment | None]) -> bytes:
    email = event["traits"]["email"]
    if email not in traits:
        traits[email] = prepared(email, orjson.loads(combined_body(email)))
    return orjson.dumps({"type": "identify", "messageId": event.get("messageId"),
                         "timestamp": event.get("timestamp"), "userId": event.get("userId"),
                         "anonymousId": event.get("anonymousId"), "traits": traits[email]})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
