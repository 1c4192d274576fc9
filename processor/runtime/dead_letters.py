"""Dead letters: the original record, unchanged, with headers that say what went wrong.

The headers follow Kafka Connect's ``errors.deadletterqueue.context.headers.enable``
names (``__connect.errors.*``), so existing tooling reads them, plus two of the
stage's own: the machine-readable reason and when the record was dead-lettered.
Both stages write them; ``processor replay-dlq`` reads and strips them.

A record the input topic accepted can still be too large for the dead-letter
topic once those headers are added (or when that topic takes less). Then the dead
letter leaves out what it must, in this order of preference: the original value;
else the original headers; else the key; else two of them, then all three. The
coordinates and the reason are always there, with two more headers:
``__<stage>.errors.omitted`` (``value``, ``headers``, ``key``, comma-separated) and
``__<stage>.errors.original.bytes`` (the original record's size). The original is
still in the input topic, at those coordinates, until its retention ends.
"""

from __future__ import annotations

from typing import NamedTuple

from processor.core.errors import RecordError
from processor.core.records import Headers, SourceRecord, header_list
from processor.core.redact import redact
from processor.runtime.size_limits import record_size

CONNECT_PREFIX = "__connect.errors."

# What a dead letter too large for its topic leaves out, in the order tried.
_OMISSIONS = (("value",), ("headers",), ("key",), ("value", "headers"), ("value", "key"),
              ("headers", "key"), ("value", "headers", "key"))


class DeadLetter(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: Headers
    omitted: tuple[str, ...]  # () when the original is whole


class DeadLetterHeaders:
    """The header names of one stage's dead letters (``__<stage>.errors.*``)."""

    def __init__(self, stage: str) -> None:
        self.prefix = f"__{stage}.errors."
        self.reason = self.prefix + "reason"
        self.failed_at = self.prefix + "timestamp"
        self.omitted = self.prefix + "omitted"
        self.original_bytes = self.prefix + "original.bytes"

    def build(self, record: SourceRecord, error: RecordError, now_ms: int) -> Headers:
        """The record's own headers, then the ones that explain its failure."""
        return [*header_list(record.headers()), *self._explain(record, error, now_ms)]

    def letter(self, record: SourceRecord, error: RecordError, now_ms: int,
               limit: int | None, *, reason: str | None = None,
               extra: dict[str, str] | None = None, keep: Headers | None = None) -> DeadLetter:
        """The dead letter of ``record``, within ``limit`` bytes (``record_size``) if given:
        with its own headers (or ``keep``), ``reason`` instead of the error's class reason
        when the cause has a finer name (an ad platform's code), and ``extra`` as
        ``__<stage>.errors.<name>``."""
        key, value = record.key(), record.value()
        original = header_list(record.headers()) if keep is None else keep
        explained = self._explain(record, error, now_ms, reason, extra)
        whole = DeadLetter(key, value, [*original, *explained], ())
        size = record_size(key, value, whole.headers)
        if limit is None or size <= limit:
            return whole
        original_bytes = record_size(key, value, original)
        letter = whole
        for omitted in _OMISSIONS:
            headers = [*([] if "headers" in omitted else original), *explained,
                       (self.omitted, ",".join(omitted).encode()),
                       (self.original_bytes, str(original_bytes).encode())]
            letter = DeadLetter(None if "key" in omitted else key,
                                None if "value" in omitted else value, headers, omitted)
            if record_size(letter.key, letter.value, letter.headers) <= limit:
                break
        # The last one holds only our headers (a few hundred bytes): no real topic is
        # smaller than that, and the broker would say so.
        return letter

    def original(self, headers: Headers) -> Headers:
        """``headers`` without the ones a dead letter added."""
        return [(k, v) for k, v in headers
                if not k.startswith((CONNECT_PREFIX, self.prefix))]

    def _explain(self, record: SourceRecord, error: RecordError, now_ms: int,
                 reason: str | None = None, extra: dict[str, str] | None = None) -> Headers:
        return [(CONNECT_PREFIX + "topic", (record.topic() or "").encode()),
                (CONNECT_PREFIX + "partition", str(record.partition()).encode()),
                (CONNECT_PREFIX + "offset", str(record.offset()).encode()),
                (CONNECT_PREFIX + "exception.class.name", _class_name(error).encode()),
                (CONNECT_PREFIX + "exception.message", redact(error.message).encode()),
                (self.reason, (reason or error.reason).encode()),
                (self.failed_at, str(now_ms).encode()),
                *((self.prefix + name, redact(value).encode())
                  for name, value in (extra or {}).items())]


ENRICHMENT = DeadLetterHeaders("enrichment")


def _class_name(error: Exception) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"
