"""The benchmark's baseline: a bare confluent-kafka loop that consumes records and
produces them unchanged, with the stage's producer settings. The stage's cached
path is measured against this in the same run (issue target: at least 0.6x).

    python -m processor.devkit.bare_loop BOOTSTRAP INPUT OUTPUT GROUP [PAD_BYTES]

It decodes each value with orjson and re-encodes it, as a minimal JSON stage
would, and stores offsets after delivery like the stage does; it stops on SIGTERM.
With PAD_BYTES, each output also carries a fixed traits block of about that size
(spliced in, as the stage splices cached traits): the same loop writing outputs as
large as the stage's, which separates the cost of the payload from the stage's own.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import orjson
from confluent_kafka import Consumer, Producer


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group = argv[:4]
    pad = int(argv[4]) if len(argv) > 4 else 0
    block = orjson.Fragment(orjson.dumps({f"clearbit_field_{i}": "x" * 40
                                          for i in range(max(1, pad // 60))})) if pad else None
    stop = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.offset.store": False,
                         "queued.max.messages.kbytes": 4096})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([source])
    while not stop:
        messages = consumer.consume(500, 0.1)
        for message in messages:
            if message.error() is not None:
                continue
            event = orjson.loads(message.value() or b"{}")
            if block is not None:
                event["traits"] = block
            value = orjson.dumps(event)
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
