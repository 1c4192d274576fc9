"""A peer of the enrichment stage for the benchmark: the job done as a plain
confluent-kafka consumer and a 32-thread pool, the way a team without this project
would write it first (the comparison the issue on throughput names).

    python -m processor.devkit.pool_peer BOOTSTRAP INPUT OUTPUT GROUP CLEARBIT_URL KEY

Each consumed batch is handed to the pool a record at a time; a worker decodes the
whole event with orjson, looks its email up in a dict shared by the workers (on a
miss: the Clearbit-compatible server's combined endpoint, through one httpx client per
thread), and builds the same output identify with the same ``clearbit_`` traits
(``processor.core.enrichment.mapping``). The loop produces the results in order and
stores the batch's offsets. No dead letters, no ordering per key beyond the batch, no
metrics: a peer, not a product. It stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import httpx
import orjson
from confluent_kafka import Consumer, Message, Producer

from processor.devkit.bare_loop import send, store_batch
from processor.devkit.peer_job import looked_up, output

THREADS = 32


class _Job:
    """``peer_job.output`` for the pool's threads: one dict of answers shared by them, one
    httpx client per thread."""

    def __init__(self, base_url: str, key: str) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {key}"}
        self._cache: dict[str, orjson.Fragment | None] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self._base_url, headers=self._headers, timeout=10)
            self._local.client = client
        return client

    def _traits(self, email: str) -> orjson.Fragment | None:
        with self._lock:
            if email in self._cache:
                return self._cache[email]
        traits = looked_up(self._client(), email)
        with self._lock:
            self._cache[email] = traits
        return traits

    def __call__(self, message: Message) -> bytes | None:
        return output(orjson.loads(message.value() or b"{}"), self._traits)


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group, base_url, key = argv[:6]
    stop = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.offset.store": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "compression.type": "lz4", "enable.idempotence": True})
    consumer.subscribe([source])
    job = _Job(base_url, key)
    with ThreadPoolExecutor(THREADS) as pool:
        while not stop:
            messages = [m for m in consumer.consume(500, 0.1) if m.error() is None]
            for message, value in zip(messages, pool.map(job, messages), strict=True):
                if value is not None:
                    send(producer, sink, value, message.key())
            producer.poll(0)
            store_batch(consumer, messages)
    producer.flush(30)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
