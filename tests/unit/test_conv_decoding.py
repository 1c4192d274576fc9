"""The conversions stage decodes only the fields its router reads: whatever the bytes, what
the router makes of them (the messages, or the dead letter's reason and message) is what
it makes of the whole event, as orjson decodes it."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.adapters.json_codec import ConversionEvents, JsonEvents
from processor.core.errors import RecordError
from processor.devkit.bench_conversions import page_event
from processor.stages.conversions import messages
from processor.stages.conversions.router import route
from tests.fakes import record
from tests.unit.test_conv_router import KEPT, RECORD_MS, events, json_values

FAST, FULL = ConversionEvents(), JsonEvents()


def fate(decoder: ConversionEvents | JsonEvents, value: bytes) -> tuple[str, Any]:
    try:
        return "routed", route(decoder.decode(record(value)), RECORD_MS, KEPT, "US")
    except RecordError as error:
        return type(error).__name__, (error.reason, error.message)


def same_fate(value: bytes) -> None:
    assert fate(FAST, value) == fate(FULL, value)


# Events as analytics libraries send them, strings where the router reads strings, so
# that most take the partial decode; then odd values in any of the fields it reads.
text = st.text(max_size=12) | st.sampled_from(["", "identify", "page", "?gclid=a", "\u00e9"])
cookies = st.fixed_dictionaries({}, optional={"fbc": st.none() | text, "fbp": text})
shaped = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["page", "track", "screen", "identify"]) | st.none(),
    "anonymousId": text | st.none(), "userId": text | st.none(),
    "timestamp": st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20", "x"]) | st.none(),
    "originalTimestamp": st.sampled_from(["2026-11-20T10:00:00.123Z"]) | st.none(),
    "context": st.fixed_dictionaries({}, optional={
        "page": st.fixed_dictionaries({}, optional={
            "url": st.sampled_from(["https://h.example/p?gclid=G1&x=1", "h?fbclid=F"]) | text,
            "search": st.sampled_from(["?gclid=G1&x=1", "gbraid=B"]) | text}) | st.none(),
        "ip": text, "userAgent": text, "clientIds": cookies, "traits": cookies,
        "library": json_values}) | st.none(),
    "properties": st.fixed_dictionaries({}, optional={"url": text, "fbc": text,
                                                      "title": json_values}),
    "traits": json_values, "integrations": json_values,
})
odd = st.tuples(shaped, st.sampled_from(["type", "anonymousId", "userId", "timestamp",
                                         "context", "properties"]), json_values
                ).map(lambda t: {**t[0], t[1]: t[2]})


@settings(max_examples=400, deadline=None)
@given(shaped | odd | events())
def test_any_event_has_the_fate_the_whole_event_gives_it(event: dict[str, Any]) -> None:
    same_fate(orjson.dumps(event))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | shaped.map(orjson.dumps).map(lambda b: b[:-1]))
def test_any_bytes_have_the_fate_the_whole_event_gives_them(value: bytes) -> None:
    same_fate(value)


@pytest.mark.parametrize("value", [
    b'{"\\u0074ype": "identify", "anonymousId": "a", "traits": {"email": "a@b.co"}}',
    b'{"type": "identif\\u0079", "userId": "u", "traits": {"lifecycle": "MQL"}}',
    b'{"type": "page", "type": "identify", "userId": "u"}',
    b'{"type": "identify", "type": "page", "anonymousId": "a"}',
    b'{"anonymousId": "a", "anonymousId": 18446744073709551616}',
    b'{"anonymousId": 18446744073709551616, "context": {"ip": "1.2.3.4"}}',
    b'{"anonymousId": "a", "userId": true, "context": {"ip": "1.2.3.4"}}',
    b'{"anonymousId": "a", "timestamp": 1e400, "context": {"ip": "1.2.3.4"}}',
    b'{"anonymousId": "a", "context": {"ip": "1.2.3.4", "x": "\xff"}}',
    b'{"anonymousId": "a", "context": {"ip": "1.2.3.4", "x": "\\ud800"}}',
    b'{"anonymousId": "a", "context": [], "properties": {"url": "https://h/?gclid=G"}}',
    b'{"anonymousId": "a", "context": {"page": {"url": 5}}, "properties": {"url": "h?gclid=G"}}',
    b'{"anonymousId": "a", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"anonymousId": "a", "context": {"ip": "1.2.3.4"}} trailing',
    b'["page"]',
    b"",
])
def test_unusual_values_are_judged_by_the_whole_event(value: bytes) -> None:
    same_fate(value)


def test_a_page_event_is_decoded_in_part() -> None:
    _, value = page_event(1, time.time(), "0f0f0f0f")
    event = FAST.decode(record(value))
    assert "_metadata" not in event
    assert "library" not in event["context"]
    assert event["context"]["page"]["url"].startswith("https://")
    same_fate(value)


def test_an_identify_is_decoded_whole() -> None:
    # orjson reads an integer beyond 64 bits as a float, msgspec as an int: the traits
    # an audience reads must be the ones it has always read.
    value = b'{"type": "identify", "userId": "u", "traits": {"n": 1180591620717411303424}}'
    assert FAST.decode(record(value)) == orjson.loads(value)


# --- the by-anon message ------------------------------------------------------------

def message_fate(decode: Any, value: bytes) -> tuple[str, Any]:
    try:
        return "read", decode(value)
    except messages.UnreadableMessage as error:
        return "unreadable", str(error)


click_names = st.sampled_from(["gclid", "fbclid", "fbc", "nope", ""])
ms = st.integers(-(2**63), 2**64 - 1)
values = text | st.sampled_from(["a b", "x" * 1025, "\t", "Cj0K"])
# Touches as the router writes them, then with one field made odd.
touches = st.fixed_dictionaries(
    {"v": st.just(1), "k": st.just("touch"), "a": text},
    optional={"u": text | st.none(),
              "c": st.dictionaries(click_names, st.tuples(values, ms).map(list)),
              "x": st.tuples(text | st.none(), text | st.none(), st.sampled_from(
                  ["https://h.example/p?email=a@b.co", "https://a@b.co/", " ", "ftp://h/"])
                  | text | st.none(), ms).map(list) | st.none(),
              "zz": json_values})
odd_touches = st.tuples(touches, st.sampled_from(["v", "k", "a", "u", "c", "x"]),
                        json_values | st.sampled_from(["", "clicks", 1.0, True, [[]]])
                        ).map(lambda t: {**t[0], t[1]: t[2]})
forms = (touches | odd_touches).map(orjson.dumps)


@settings(max_examples=500, deadline=None)
@given(forms | forms.map(lambda b: b[:-1] + b',"y":"\xff"}') | st.binary(max_size=60))
def test_a_touch_reads_as_the_general_decode_reads_it(value: bytes) -> None:
    assert message_fate(messages.decode, value) == message_fate(messages.decode_any, value)


def test_a_touch_the_router_wrote_takes_the_typed_path() -> None:
    _, value = page_event(2, time.time(), "0f0f0f0f")
    touch = route(FAST.decode(record(value)), RECORD_MS, KEPT, "US").touch
    assert touch is not None
    assert messages._touch(messages.encode(touch)) == touch
