"""The JSON codec reads only the fields that decide an event's fate: whatever the bytes,
what the stage does with them is what a full decode would have made it do."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.adapters.json_codec import JsonCodec
from processor.core.enrichment.events import classify
from processor.core.errors import DecodeError, NotAnObjectError, RecordError
from processor.devkit.samples import EVENT_SIZES, analytics_identify
from tests.fakes import record

FIELDS = ("type", "userId", "anonymousId", "messageId", "integrations", "traits", "context")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["identify", "track", "ada@example.com", " Ada@Example.com ", ""]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["email", "Clearbit Enrichment", "Clearbit", "All"]) | st.text(max_size=6),
        c, max_size=4),
    max_leaves=12)
events = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=7)


def fate(decode: Any, value: bytes) -> tuple[str, Any]:
    """What the stage does with ``value``: the decision, or the dead letter's reason and
    message."""
    try:
        return "decided", classify(decode(value))
    except RecordError as error:
        return type(error).__name__, (error.reason, error.message)


def full_decode(value: bytes) -> dict[str, Any]:
    """The decode the stage had before: the whole value, by orjson."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise DecodeError(f"value is not valid JSON: {error}") from None
    if not isinstance(event, dict):
        raise NotAnObjectError(f"value is JSON but not an object ({type(event).__name__})")
    return event


def codec_decode(value: bytes) -> dict[str, Any]:
    return JsonCodec().decode(record(value))


@settings(max_examples=400, deadline=None)
@given(events)
def test_any_json_object_has_the_fate_a_full_decode_gives_it(event: dict[str, Any]) -> None:
    for candidate in (event, {**event, "type": "identify"}):
        value = orjson.dumps(candidate)
        assert fate(codec_decode, value) == fate(full_decode, value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | events.map(orjson.dumps).map(lambda b: b[:-1]))
def test_any_bytes_have_the_fate_a_full_decode_gives_them(value: bytes) -> None:
    assert fate(codec_decode, value) == fate(full_decode, value)


@pytest.mark.parametrize("value", [
    b'{"type": "identify", "userId": "u", "context": {"x": "\xff"}, "traits": {"email": "a@b.co"}}',
    b'{"type": "identify", "userId": "u", "traits": [1]}',
    b'{"type": "identify", "userId": "u", "traits": null}',
    b'{"type": "identify", "userId": "u", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'["identify"]',
    b'{"type": "identify"} trailing',
])
def test_unusual_values_are_judged_by_the_full_decode(value: bytes) -> None:
    assert fate(codec_decode, value) == fate(full_decode, value)


@pytest.mark.parametrize("size", sorted(EVENT_SIZES))
def test_analytics_events_keep_only_the_deciding_fields(size: str) -> None:
    event = analytics_identify(3, "Ada@Initech.example", user_id="user-3", message_id="m-3",
                               size=size)
    head = codec_decode(orjson.dumps(event))
    assert head["traits"] == {"email": "Ada@Initech.example"}
    assert "context" not in head
    assert fate(codec_decode, orjson.dumps(event)) == fate(full_decode, orjson.dumps(event))
