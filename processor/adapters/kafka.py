"""confluent-kafka behind the pipeline's seams: the consumer (``KafkaSource``) and the
producer (``KafkaSink``, optionally transactional).

Both are driven from the stage's thread only. librdkafka errors are translated
here into ``processor.core.errors`` types, so nothing above this module needs
to know confluent-kafka's error codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processor.core.errors import ConfigError, DeliveryError, FatalError
from processor.core.offsets import TopicPartition as TP
from processor.core.records import Headers
from processor.runtime.ports import DeliveryCallback
from processor.runtime.size_limits import TopicLimits, usable

log = logging.getLogger(__name__)

RebalanceCallback = Callable[[list[TP]], None]


def _client(factory: Callable[[dict[str, Any]], Any], config: Mapping[str, Any],
            sources: Mapping[str, str]) -> Any:
    """Build a client, turning librdkafka's config complaints into a ``ConfigError``
    that names the environment variable to fix."""
    try:
        return factory(dict(config))
    except (KafkaException, ValueError, TypeError) as error:
        text = str(error.args[0] if error.args else error)
        culprit = next((env for prop, env in sources.items() if f'"{prop}"' in text
                        or f"'{prop}'" in text or prop in text), None)
        where = f"{culprit}: " if culprit else ""
        raise ConfigError(f"{where}Kafka client configuration rejected: {text}") from None


def _on_error(error: KafkaError) -> None:
    # Broker connection trouble is reported here and retried by librdkafka itself.
    if error.fatal():
        log.error("kafka client fatal error: %s", error.str())
    else:
        log.warning("kafka client error: %s", error.str())


def verify_topics(config: Mapping[str, Any], topics: Mapping[str, str], timeout: float) -> None:
    """Fail fast, and say what to fix, when the cluster is unreachable or a topic is missing.

    ``topics`` maps each setting's variable name to its topic. The processor never
    creates topics: partition counts, retention and compaction are the owner's call.
    """
    metadata = _cluster(config, timeout)[1]
    missing = [f"{variable}: topic '{topic}' does not exist"
               for variable, topic in topics.items()
               if topic not in metadata.topics or metadata.topics[topic].error is not None]
    if missing:
        raise ConfigError("\n".join(f"{line} on the cluster at {config.get('bootstrap.servers')}; "
                                    "create it first (the processor does not create topics)"
                                    for line in missing))


def _cluster(config: Mapping[str, Any], timeout: float) -> tuple[Any, Any]:
    """A short-lived admin client and the cluster's metadata, or ``FatalError`` saying
    what to check when the cluster does not answer."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only at start

    # Notices only: closing the client right after the answer makes librdkafka log the
    # unserved background events it drops, which is not news.
    admin_config: dict[str, Any] = {"error_cb": _on_error, "log_level": 4, **config}
    admin = AdminClient(admin_config)
    try:
        return admin, admin.list_topics(timeout=timeout)
    except KafkaException as error:
        raise FatalError(
            f"could not reach Kafka at KAFKA_BOOTSTRAP_SERVERS={config.get('bootstrap.servers')} "
            f"within {timeout:.0f}s ({error.args[0].str() if error.args else error}); check the "
            "address and the PROCESSOR_KAFKA_* security settings") from None


class TopicInfo(NamedTuple):
    partitions: int
    cleanup_policy: str


def describe_topics(config: Mapping[str, Any], topics: Sequence[str], timeout: float
                    ) -> dict[str, TopicInfo | None]:
    """Partition count and cleanup policy of each topic (None: it does not exist)."""
    # ConfigResource is public but missing from the package's exports for mypy.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        ConfigResource,
    )

    admin, metadata = _cluster(config, timeout)
    found: dict[str, TopicInfo | None] = {}
    existing = [t for t in topics
                if t in metadata.topics and metadata.topics[t].error is None]
    policies: dict[str, str] = {}
    if existing:
        futures = admin.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in existing])
        for resource, future in futures.items():
            entry = future.result(timeout=timeout).get("cleanup.policy")
            policies[resource.name] = entry.value if entry is not None else "delete"
    for topic in topics:
        found[topic] = (TopicInfo(len(metadata.topics[topic].partitions), policies[topic])
                        if topic in policies else None)
    return found


def max_message_bytes(config: Mapping[str, Any], topics: Sequence[str], timeout: float,
                      fallback: int) -> dict[str, int]:
    """Each topic's ``max.message.bytes``, as the cluster applies it (the topic's own
    setting, else the broker's ``message.max.bytes``). ``fallback`` for a topic whose
    configuration may not be read (no DescribeConfigs permission), with a warning."""
    # Only at start. ConfigResource is public but missing from the package's exports for mypy.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        AdminClient,
        ConfigResource,
    )

    # Short-lived too: warnings only, as in describe_topics.
    admin_config: dict[str, Any] = {"error_cb": _on_error, "log_level": 4, **config}
    admin = AdminClient(admin_config)
    futures = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics],
        request_timeout=timeout)
    found: dict[str, int] = {}
    for resource, future in futures.items():
        try:
            entry = future.result(timeout).get("max.message.bytes")
            found[resource.name] = int(entry.value) if entry is not None else fallback
        except (KafkaException, ValueError, TypeError) as error:
            log.warning("could not read max.message.bytes of topic %s (%s); taking %d bytes "
                        "as its limit", resource.name, error, fallback)
            found[resource.name] = fallback
    return found


# librdkafka's own defaults: the producer's record limit (and so the limit taken for a
# topic whose configuration cannot be read) and its batch size.
PRODUCER_DEFAULT_MAX_BYTES = 1_000_000
PRODUCER_DEFAULT_BATCH_BYTES = 1_000_000
# The outputs the producer may hold unconfirmed, in bytes (see size_producer).
PRODUCER_QUEUE_BYTES = 32 * 2**20


def size_producer(producer_config: dict[str, Any], producer_sources: Mapping[str, str],
                  room: Sequence[int]) -> None:
    """The producer's record, batch and queue sizes for topics taking ``room`` bytes a
    record, each left as a pass-through variable set it. The queue of outputs not yet
    confirmed is bounded in bytes (librdkafka's default is 1 GiB): with records of any
    size it is what bounds the output side's memory, and it always holds two records of
    the largest size, so that one fits whatever else is queued."""
    if "message.max.bytes" not in producer_sources:
        producer_config["message.max.bytes"] = min(1_000_000_000, max(1000, *room))
    if "batch.size" not in producer_sources:
        producer_config["batch.size"] = max(1, min(PRODUCER_DEFAULT_BATCH_BYTES, *room))
    if "queue.buffering.max.kbytes" not in producer_sources:
        largest = int(producer_config["message.max.bytes"])
        producer_config["queue.buffering.max.kbytes"] = max(PRODUCER_QUEUE_BYTES,
                                                            2 * largest) // 1024 + 1


def producer_limits(admin_config: Mapping[str, Any], topics: Sequence[str], timeout: float,
                    producer_config: dict[str, Any], producer_sources: Mapping[str, str]
                    ) -> TopicLimits:
    """The record limits of ``topics`` (those a stage writes to), read from the cluster, with
    the producer sized to match unless a pass-through variable says otherwise: its
    ``message.max.bytes`` to the largest (librdkafka's 1,000,000 would refuse records the
    topics take), its ``batch.size`` to the smallest (a batch is held to the limit of its
    topic as a whole). Any stage's composition root calls it before building the sink."""
    found = max_message_bytes(admin_config, topics, timeout, fallback=PRODUCER_DEFAULT_MAX_BYTES)
    size_producer(producer_config, producer_sources, [usable(found[topic]) for topic in topics])
    log.info("record limits: %s", ", ".join(f"{t} {usable(found[t])} bytes" for t in topics))
    return TopicLimits.of_topics(found, int(producer_config["message.max.bytes"]))


class KafkaSource:
    """The consumer: batches of records, pause/resume, stored offsets and commits."""

    def __init__(self, config: Mapping[str, Any], sources: Mapping[str, str],
                 on_commit: Callable[[bool], None]) -> None:
        def committed(error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
            if error is not None and error.code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed: %s", error.str())
                on_commit(False)
            elif error is None:
                on_commit(True)

        full = {"error_cb": _on_error, "on_commit": committed, **config}
        self._consumer = _client(Consumer, full, sources)
        self.paused = False
        self._held: set[TP] = set()  # partitions paused on their own (``hold``)

    def subscribe(self, topics: Sequence[str], on_assign: RebalanceCallback,
                  on_revoke: RebalanceCallback, on_lost: RebalanceCallback) -> None:
        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            consumer.incremental_assign(partitions)
            if self.paused:
                # Joined while backpressure holds: these must not be fetched either.
                consumer.pause(partitions)
            self._held -= {(p.topic, p.partition) for p in partitions}
            on_assign([(p.topic, p.partition) for p in partitions])

        def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            on_revoke([(p.topic, p.partition) for p in partitions])

        def lost(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            on_lost([(p.topic, p.partition) for p in partitions])

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def poll(self, max_records: int, timeout: float) -> list[Message]:
        """Up to ``max_records`` records; client-level errors are logged or raised.

        What is already fetched is taken without waiting; only when there is nothing does
        it wait, and then for the first record alone: ``consume(n, t)`` waits until it has
        n records or t has passed, which at low load adds up to t to every event's
        latency (figures in docs/benchmarks.md)."""
        messages: list[Message] = self._consumer.consume(max_records, 0)
        if not messages and timeout > 0:
            messages = self._consumer.consume(1, timeout)
        if not messages:
            return messages
        good = [m for m in messages if m.error() is None]
        if len(good) != len(messages):
            for message in messages:
                error = message.error()
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal():
                    raise FatalError(f"kafka consumer failed: {error.str()}")
                log.warning("consumer error: %s", error.str())
        return good

    def assignment(self) -> list[TP]:
        return [(p.topic, p.partition) for p in self._consumer.assignment()]

    def pause(self) -> None:
        self._consumer.pause(self._consumer.assignment())
        self.paused = True

    def resume(self) -> None:
        self._consumer.resume([p for p in self._consumer.assignment()
                               if (p.topic, p.partition) not in self._held])
        self.paused = False

    def hold(self, tps: list[TP]) -> None:
        """Stop fetching these partitions until ``release``, whatever ``resume`` does
        meanwhile (a pipeline waiting on a partition's first record, for one)."""
        owned = self._owned(tps)
        self._held |= {(p.topic, p.partition) for p in owned}
        if owned:
            self._consumer.pause(owned)

    def release(self, tps: list[TP]) -> None:
        self._held -= set(tps)
        owned = self._owned(tps)
        if owned and not self.paused:
            self._consumer.resume(owned)

    def _owned(self, tps: list[TP]) -> list[TopicPartition]:
        wanted = set(tps)
        return [p for p in self._consumer.assignment() if (p.topic, p.partition) in wanted]

    def store(self, positions: Mapping[TP, int]) -> None:
        """Mark positions for the background auto-commit (at-least-once)."""
        if positions:
            try:
                self._consumer.store_offsets(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()])
            except KafkaException as error:
                # A partition revoked meanwhile; its new owner starts from the last commit.
                log.warning("could not store offsets: %s", error)

    def commit(self, positions: Mapping[TP, int]) -> bool:
        """Commit positions synchronously now; False (logged) when the broker refused."""
        if not positions:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            if error.args and error.args[0].code() == KafkaError._NO_OFFSET:
                return True
            log.warning("synchronous commit failed: %s", error)
            return False
        return True

    def committed(self, tps: list[TP], timeout: float = 30.0) -> dict[TP, int]:
        """The group's committed positions for ``tps`` (partitions without one left out)."""
        found = self._consumer.committed([TopicPartition(t, p) for t, p in tps], timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset != OFFSET_INVALID}

    def seek(self, positions: Mapping[TP, int]) -> None:
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        self._consumer.close()


_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


class KafkaSink:
    """The producer. Transactional when the config carries a ``transactional.id``."""

    def __init__(self, config: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        # Refusals of records produced without a callback of their own (the transactional
        # path, where the commit confirms them); the others report to their callback.
        self.refused: list[str] = []
        self._producer = _client(Producer, {"error_cb": _on_error,
                                            "on_delivery": self._failed, **config}, sources)
        self.transactional = "transactional.id" in config
        self._in_transaction = False
        if self.transactional:
            try:
                self._producer.init_transactions(30)
            except KafkaException as error:
                raise FatalError(f"could not initialise transactions: {error}") from None

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None, on_delivery: DeliveryCallback | None,
                partition: int = -1) -> None:
        while True:
            try:
                if headers is None and on_delivery is None and partition < 0:
                    self._producer.produce(topic, value, key)  # the hot path: no keywords
                else:
                    self._producer.produce(topic, value, key, partition=partition,
                                           headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                # librdkafka's local queue is full: serve deliveries until there is room.
                self._producer.poll(0.05)
            except KafkaException as error:
                # Records are sized against their topic before they get here
                # (processor.runtime.size_limits), so this is not one record's fault.
                raise DeliveryError(f"the producer refused a record for {topic}: "
                                    f"{error.args[0].str()}") from None

    def _failed(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if self.transactional and error.code() in _PURGED:
            # The records of an aborted transaction, reported after the abort: the stage
            # has rewound to the last commit and produces them again.
            return
        self.refused.append(f"{message.topic()}: {error.str()}")

    def poll(self, timeout: float) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        remaining: int = self._producer.flush(timeout)
        return remaining

    # --- transactions ------------------------------------------------------------

    def begin(self) -> None:
        if not self._in_transaction:
            self._producer.begin_transaction()
            self._in_transaction = True

    def commit_transaction(self, positions: Mapping[TP, int], group_metadata: Any,
                           timeout: float) -> None:
        """Commit the open transaction with the offsets that cover its outputs.

        Raises ``DeliveryError`` when the transaction was aborted (the caller
        rewinds to the last committed offsets) and ``FatalError`` when the
        producer cannot go on (fenced by a newer instance, for example).
        """
        self.begin()
        try:
            if positions:
                offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
                self._producer.send_offsets_to_transaction(offsets, group_metadata, timeout)
            self._producer.commit_transaction(timeout)
            self._in_transaction = False
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.txn_requires_abort():
                self._abort(timeout)
                raise DeliveryError(f"transaction aborted: {error.str()}") from None
            if error.retriable():
                raise DeliveryError(f"transaction commit timed out: {error.str()}") from None
            raise FatalError(f"transactional producer failed: {error.str()}") from None

    def _abort(self, timeout: float) -> None:
        try:
            self._producer.abort_transaction(timeout)
        except KafkaException as exc:
            raise FatalError(f"could not abort transaction: {exc.args[0].str()}") from None
        finally:
            self._in_transaction = False

    def abort(self, timeout: float) -> None:
        if self._in_transaction:
            self._abort(timeout)

    def close(self) -> None:
        """Release the producer now (it flushes what is still queued, aborting an open
        transaction) instead of whenever the garbage collector gets to it."""
        self._producer.close()
