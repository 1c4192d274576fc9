"""The benchmark's baseline: a bare confluent-kafka loop that consumes records and
produces them again, with the stage's own consumer and producer settings (its
``kafka_config``, ``PROCESSOR_KAFKA_*`` overrides included), so that a setting
that holds the stage back holds this loop back too. The stage's cached path is
measured against this in the same run, on the same events.

    python -m processor.devkit.bare_loop BOOTSTRAP INPUT OUTPUT GROUP

It decodes each value with orjson and re-encodes it, as a minimal JSON stage
would, and stores the offsets of each batch once produced; it stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import orjson
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.settings import Settings


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group = argv[:4]
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
    consumer.subscribe([source])
    while not stop:
        messages = consumer.consume(500, 0.1)
        for message in messages:
            if message.error() is not None:
                continue
            value = orjson.dumps(orjson.loads(message.value() or b"{}"))
            while True:
                try:
                    producer.produce(sink, value, message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        if messages:
            consumer.store_offsets(message=messages[-1])
    producer.flush(30)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
