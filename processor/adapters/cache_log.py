"""A lookup cache kept in a compacted Kafka topic: it survives restarts and is shared by
every replica of the group, with no infrastructure beyond the Kafka already there.

Each record is one remembered lookup: the key is the SHA-256 of the normalised
email (never the address), the value a small JSON document::

    {"v": 1, "kind": "found" | "not_found" | "rejected",
     "expires_at": <epoch seconds>, "traits": {...} | null, "message": "..." | null}

Compaction keeps the newest record per key; expired ones are ignored on load
(give the topic ``cleanup.policy=compact`` and, to drop long-expired keys too,
``compact,delete`` with ``retention.ms`` at least ``PROCESSOR_CACHE_TTL``).

At start the whole topic is read (up to its end at that moment) before any
input is consumed; then a background thread follows it, so what one replica
learns reaches the others within a poll interval. Writes are fire-and-forget:
a lost write costs one repeated lookup later, never data.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
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

from processor.core.enrichment.answers import CacheEntry, Kind
from processor.core.errors import FatalError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KINDS = {kind.value: kind for kind in Kind}


def encode_entry(entry: CacheEntry) -> bytes:
    return orjson.dumps({"v": FORMAT_VERSION, "kind": entry.kind, "expires_at": entry.expires_at,
                         "traits": entry.traits, "message": entry.message})


def decode_entry(key: bytes | None, value: bytes | None) -> CacheEntry | None:
    """The entry a record holds, or None for tombstones and anything unreadable."""
    if not key or not value:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        return None
    kind, expires = data.get("kind"), data.get("expires_at")
    traits, message = data.get("traits"), data.get("message")
    if kind not in KINDS or not isinstance(expires, int | float):
        return None
    return CacheEntry(key.decode(errors="replace"), KINDS[kind],
                      traits if isinstance(traits, dict) else None,
                      message if isinstance(message, str) else None, float(expires))


class KafkaCacheLog:
    """``processor.runtime.ports.SharedCache`` on a compacted topic."""

    def __init__(self, topic: str, consumer_config: Mapping[str, Any],
                 producer_config: Mapping[str, Any], timeout: float = 30.0) -> None:
        self._topic = topic
        self._timeout = timeout
        reader = {**consumer_config, "group.id": f"cache-reader-{uuid.uuid4().hex[:12]}",
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"}
        for own in ("partition.assignment.strategy", "auto.commit.interval.ms"):
            reader.pop(own, None)
        self._reader_config = reader
        self._producer = Producer({**producer_config, "linger.ms": 50})
        self._updates: deque[CacheEntry] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ends: dict[int, int] = {}

    def load(self) -> Iterator[CacheEntry]:
        consumer = Consumer(self._reader_config)
        try:
            metadata = consumer.list_topics(self._topic, timeout=self._timeout)
            partitions = sorted(metadata.topics[self._topic].partitions)
            self._ends = {p: consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), self._timeout)[1] for p in partitions}
            todo = {p for p, end in self._ends.items() if end > 0}
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in todo])
            while todo:
                for message in consumer.consume(1000, 1.0):
                    part = message.partition() or 0
                    if self._reached_end(message, part, todo):
                        continue
                    entry = decode_entry(message.key(), message.value())
                    if entry is not None:
                        yield entry
        finally:
            consumer.close()
        self._thread = threading.Thread(target=self._follow, name="cache-log", daemon=True)
        self._thread.start()

    def _reached_end(self, message: Message, part: int, todo: set[int]) -> bool:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                todo.discard(part)
                return True
            raise FatalError(f"could not read the cache topic {self._topic}: {error.str()}")
        if (message.offset() or 0) + 1 >= self._ends.get(part, 0):
            todo.discard(part)
        return False

    def _follow(self) -> None:
        consumer = Consumer({**self._reader_config, "enable.partition.eof": False})
        consumer.assign([TopicPartition(self._topic, p, end) for p, end in self._ends.items()])
        try:
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.5):
                    if message.error() is None:
                        entry = decode_entry(message.key(), message.value())
                        if entry is not None:
                            self._updates.append(entry)
        except Exception:  # a broken follower only means replicas learn on restart instead
            log.warning("stopped following the cache topic", exc_info=True)
        finally:
            consumer.close()

    def publish(self, entry: CacheEntry) -> None:
        try:
            self._producer.produce(self._topic, encode_entry(entry), entry.key.encode(),
                                   on_delivery=_warn_on_failure)
        except BufferError:
            log.warning("cache topic producer queue full; this lookup is not shared")
        except KafkaException as error:
            # Too large for the topic, say: losing an entry only costs a lookup.
            log.warning("a cache entry was not written: %s", error.args[0].str())
        self._producer.poll(0)

    def updates(self) -> list[CacheEntry]:
        updates = self._updates
        taken = []
        while updates:
            taken.append(updates.popleft())
        return taken

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._producer.flush(10)
        self._producer.close()


def _warn_on_failure(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        log.warning("a cache entry was not written: %s", error.str())
