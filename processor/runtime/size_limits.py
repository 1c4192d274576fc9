"""How large a record each topic a stage writes to takes, read from the topic at start.

Kafka refuses a record batch larger than the topic's ``max.message.bytes``
(1,048,588 bytes unless the topic or the broker says otherwise), and librdkafka
refuses, as soon as it is produced, a record larger than the producer's
``message.max.bytes``. Either refusal, left to happen, stops the stage on the same
record at every restart. So every stage checks each record against its topic's
limit before producing it, and chooses an outcome instead:

* an output too large for its topic is dead-lettered as ``output_too_large``
  (``TopicLimits.refusal``);
* a dead letter too large for the dead-letter topic leaves out the original
  value, headers or key, and says so (``processor.runtime.dead_letters``).

A record's size is counted as librdkafka counts it, rounded up: the key, the
value, each header's name and value with 10 bytes for their lengths, and 36
bytes of record framing. What a record may use of a topic's limit is the limit
less the batch header (61 bytes) and a margin for compression that does not
shrink the record (64 bytes and 1/4096 of the limit).
"""

from __future__ import annotations

from collections.abc import Mapping

from processor.core.errors import OutputTooLargeError
from processor.core.records import Headers, SourceRecord

RECORD_FRAMING = 36
HEADER_FRAMING = 10
BATCH_FRAMING = 61
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    """The bytes a record counts against a limit (never less than librdkafka counts)."""
    size = RECORD_FRAMING + len(key or b"") + len(value or b"")
    for name, header in headers or ():
        size += HEADER_FRAMING + len(name.encode()) + len(
            header.encode() if isinstance(header, str) else header or b"")
    return size


def usable(max_message_bytes: int) -> int:
    """Of a topic's ``max.message.bytes``, what one record (``record_size``) may use."""
    return max_message_bytes - BATCH_FRAMING - 64 - max_message_bytes // 4096


class TopicLimits:
    """The largest record, as ``record_size`` counts it, that each topic takes.

    A topic it does not know has no limit here (fakes in unit tests).
    """

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self._limits = dict(limits or {})

    @classmethod
    def of_topics(cls, max_message_bytes: Mapping[str, int],
                  producer_max: int | None = None) -> TopicLimits:
        """From each topic's ``max.message.bytes``, and the producer's ``message.max.bytes``
        when it is lower (a pass-through setting)."""
        return cls({topic: min(usable(value), producer_max or value)
                    for topic, value in max_message_bytes.items()})

    def limit(self, topic: str) -> int | None:
        return self._limits.get(topic)

    def refusal(self, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None, record: SourceRecord) -> OutputTooLargeError | None:
        """None when the record fits ``topic``; else the error that dead-letters its input."""
        limit = self._limits.get(topic)
        if limit is None:
            return None
        size = record_size(key, value, headers)
        if size <= limit:
            return None
        return OutputTooLargeError(
            f"the output ({size} bytes) is larger than {topic} takes ({limit} bytes)", record)
