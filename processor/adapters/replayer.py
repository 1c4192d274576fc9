"""The Kafka side of ``processor replay-dlq`` (the contract: ``processor.entrypoints.replay``)."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from processor.core.errors import DeliveryError
from processor.core.records import HeaderValue, header_list
from processor.core.replay import ReplayFilter, ReplayResult
from processor.runtime.dead_letters import DeadLetterHeaders

log = logging.getLogger(__name__)


class Replayer:
    """Moves dead letters of ``dlq_topic`` back to ``input_topic`` as replay group ``group``."""

    def __init__(self, *, consumer_config: dict[str, Any], producer_config: dict[str, Any],
                 group: str, dlq_topic: str, input_topic: str,
                 headers: DeadLetterHeaders) -> None:
        self._dlq_topic = dlq_topic
        self._input_topic = input_topic
        self._headers = headers
        consumer_config = {**consumer_config, "group.id": group, "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "enable.partition.eof": True}
        producer_config = {k: v for k, v in producer_config.items()
                           if not k.startswith("transaction")}
        self._consumer = Consumer(consumer_config)
        self._producer = Producer(producer_config)

    def run(self, accept: ReplayFilter, *, from_beginning: bool, dry_run: bool) -> ReplayResult:
        topic = self._dlq_topic
        metadata = self._consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        result = ReplayResult()
        if not partitions:
            return result
        # Replay up to where the topic ends now: dead letters written meanwhile wait
        # for the next run, so a replay always finishes.
        ends = {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1]
                for p in partitions}
        starts = {}
        if not from_beginning:
            committed = self._consumer.committed([TopicPartition(topic, p) for p in partitions], 30)
            starts = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        todo = {p for p in partitions if starts.get(p, 0) < ends[p]}
        self._consumer.assign([TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING))
                               for p in todo])
        positions: dict[int, int] = {}
        while todo:
            for message in self._consumer.consume(500, 1.0):
                part, offset, error = message.partition() or 0, message.offset() or 0, \
                    message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        todo.discard(part)
                        continue
                    raise DeliveryError(f"reading {topic} failed: {error.str()}")
                if offset >= ends[part]:
                    todo.discard(part)
                    continue
                result.read += 1
                positions[part] = offset + 1
                if positions[part] >= ends[part]:
                    todo.discard(part)
                self._move(message, accept, result, dry_run)
            self._checkpoint(topic, positions, dry_run)
        return result

    def _move(self, message: Message, accept: ReplayFilter, result: ReplayResult,
              dry_run: bool) -> None:
        headers = header_list(message.headers())
        found = dict(headers)
        reason = _text(found.get(self._headers.reason))
        failed_at = _text(found.get(self._headers.failed_at))
        written_ms = int(failed_at) if failed_at.isdigit() else message.timestamp()[1]
        if not accept.accepts(reason, written_ms):
            result.passed_over += 1
            return
        if self._headers.omitted in found:
            result.incomplete += 1  # the original is only in the input topic now
            return
        result.moved += 1
        if dry_run:
            return
        original = self._headers.original(headers)
        self._producer.produce(self._input_topic, message.value(), message.key(),
                               headers=original or None, on_delivery=_raise_on_failure)

    def _checkpoint(self, topic: str, positions: dict[int, int], dry_run: bool) -> None:
        if dry_run or not positions:
            return
        remaining = self._producer.flush(60)
        if remaining:
            raise DeliveryError(f"{remaining} replayed record(s) not confirmed; nothing committed")
        self._consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in positions.items()],
                              asynchronous=False)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(30)


def _text(value: HeaderValue) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _raise_on_failure(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        raise DeliveryError(f"could not re-publish a dead letter: {error.str()}")
