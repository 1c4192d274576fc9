"""Event codecs: JSON here; Avro with a schema registry in ``processor.adapters.avro``.

Decoding reads only the fields the stage looks at (msgspec skips the rest without
building objects for it: ``JsonCodec`` for enrichment, ``ConversionEvents`` for the
conversions router); anything unusual about a value is decoded in full by
orjson, whose verdict is the one the stage has always given. Encoding is orjson,
which splices the cached, pre-encoded traits into each output.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
import orjson

from processor.core.errors import DecodeError, NotAnObjectError
from processor.core.records import SourceRecord, is_utf8


class _TraitsHead(TypedDict, total=False):
    email: Any


class _Head(TypedDict, total=False):
    """The fields ``classify`` reads; their types are checked there, not here."""

    type: Any
    userId: Any
    anonymousId: Any
    messageId: Any
    integrations: Any
    traits: _TraitsHead


# Typed as a plain dict's decoder: a _Head is a dict holding some of the event's keys.
_HEAD: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Head)
# The head decoder refuses: a value that is not JSON, a traits that is not an object,
# nesting beyond its stack (RecursionError).
_UNUSUAL = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def decode_object(value: bytes) -> dict[str, Any]:
    """The whole JSON object ``value`` holds; ``DecodeError`` when it holds none."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        # orjson's message names the position, never the content.
        raise DecodeError(f"value is not valid JSON: {error}") from None
    if not isinstance(event, dict):
        raise NotAnObjectError(f"value is JSON but not an object ({type(event).__name__})")
    return event


class JsonEvents:
    """Whole events, for a stage that reads more than an identify's head (conversions:
    page URLs, browser context, any trait an audience reads)."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        return decode_object(record.value() or b"")


# What the conversions router reads of a page, track or screen event, as analytics
# libraries send it. A value of another type (a numeric id, an epoch timestamp, a
# context that is not an object) is a validation error here, and the whole event is then
# decoded by orjson: the router's own checks decide what such values mean.
class _Cookies(TypedDict, total=False):
    fbc: str | None
    fbp: str | None


class _Page(TypedDict, total=False):
    url: str | None
    search: str | None


class _Properties(TypedDict, total=False):
    url: str | None
    fbc: str | None
    fbp: str | None


class _Context(TypedDict, total=False):
    page: _Page | None
    ip: str | None
    userAgent: str | None
    clientIds: _Cookies | None
    traits: _Cookies | None


class _Touching(TypedDict, total=False):
    type: str | None
    anonymousId: str | None
    userId: str | None
    timestamp: str | None
    originalTimestamp: str | None
    context: _Context | None
    properties: _Properties | None


_TOUCHING: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Touching)


class ConversionEvents:
    """The fields of an event the conversions router reads; an identify whole (its
    traits are the audiences' and the match keys'), and anything unusual whole too."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        value = record.value() or b""
        head = _head(_TOUCHING, value)
        if head is not None and head.get("type") != "identify":
            return head
        return decode_object(value)


class JsonCodec:
    """One JSON object per record value, UTF-8."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        """The event's fields that decide what happens to it (not the whole event)."""
        value = record.value() or b""
        head = _head(_HEAD, value)
        return head if head is not None else decode_object(value)

    def prepare(self, traits: dict[str, Any]) -> orjson.Fragment:
        # Encoded once per email and spliced into every output as it is. Copied because
        # orjson's result keeps its whole growth buffer, and the cache holds many.
        return orjson.Fragment(bytes(bytearray(orjson.dumps(traits))))

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        return orjson.dumps(event)


def _head(decoder: msgspec.json.Decoder[Any], value: bytes) -> dict[str, Any] | None:
    """Some fields of ``value``, typed by ``decoder``; None when the whole event must be
    decoded by orjson to judge it (not UTF-8, not JSON, of another form, too deep)."""
    if not is_utf8(value):
        return None
    try:
        head: dict[str, Any] = decoder.decode(value)
    except _UNUSUAL:
        return None
    return head
