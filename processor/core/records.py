"""The shape of a consumed Kafka record, as the core sees it.

``SourceRecord`` is a Protocol written in the method style of
``confluent_kafka.Message`` so the hot path can pass librdkafka's own message
objects straight through without copying them into a Python object per record.
``Record`` is a plain implementation for tests, replays and fakes.
"""

from __future__ import annotations

from typing import Protocol

HeaderValue = str | bytes | None
Headers = list[tuple[str, HeaderValue]]
# What librdkafka hands back: a list of pairs (its typing also allows a dict).
RawHeaders = dict[str, HeaderValue] | list[tuple[str, HeaderValue]]


def header_list(raw: RawHeaders | None) -> Headers:
    """Headers as a fresh list of (name, value) pairs, whatever shape they came in."""
    if not raw:
        return []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


class SourceRecord(Protocol):
    """A consumed record: where it came from, and its raw bytes."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RawHeaders | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class Record:
    """A ``SourceRecord`` held in Python objects (tests, fakes, replays)."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_timestamp_ms", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._value = value
        self._key = key
        self._headers = headers
        self._timestamp_ms = timestamp_ms

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        # (TIMESTAMP_CREATE_TIME, ms) in librdkafka's convention; 0 means "not available".
        return (1 if self._timestamp_ms else 0, self._timestamp_ms)

    def __repr__(self) -> str:
        # Never the value: it holds personal data.
        return f"Record({self._topic}[{self._partition}]@{self._offset})"


def coordinates(record: SourceRecord) -> str:
    """``topic[partition]@offset``: how logs and errors name a record without its data."""
    return f"{record.topic()}[{record.partition()}]@{record.offset()}"


def is_utf8(value: bytes) -> bool:
    """True when ``value`` is valid UTF-8 (msgspec does not check the strings it skips)."""
    if value.isascii():
        return True
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True
