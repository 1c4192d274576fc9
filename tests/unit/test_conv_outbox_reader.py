"""The sender reads the conversions topic with ``read_record``: it must agree with
``schemas/conversion.schema.json`` (the one schema) on what is a record and what is not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.conversions.record import SCHEMA, UnreadableRecord, read_record
from tests.senders import conversion, schema_validator
from tests.unit.test_conv_record import audience, build


def schema_accepts(record: Any) -> bool:
    return not list(schema_validator(SCHEMA).iter_errors(record))


def reader_accepts(record: Any) -> bool:
    try:
        read_record(record)
    except UnreadableRecord:
        return False
    return True


def samples() -> list[dict[str, Any]]:
    """Records as the conversions stage builds them, and as the sender's tests write them."""
    return [build(audience("both_7d")), build(audience("google_30d")),
            build(audience("meta_1d"), events=[]), conversion(1), conversion(2, "ads_30d"),
            conversion(3, "meta_7d", fbc=False, keys=False),
            conversion(4, "google_30d", google_click="wbraid")]


@pytest.mark.parametrize("record", samples(), ids=lambda r: r["audience"])
def test_every_record_the_stage_writes_is_read(record: dict[str, Any]) -> None:
    assert schema_accepts(record)
    read = read_record(record)
    assert read.conversion_id == record["conversion_id"]
    assert read.entry_ts == record["entry_ts"]
    assert (read.meta is not None) == ("meta" in record["destinations"])
    assert (read.google is not None) == ("google" in record["destinations"])
    assert dict(read.meta_keys) == record["matching"].get("meta", {})
    assert dict(read.google_keys) == record["matching"].get("google", {})
    google_click = record["clicks"].get("google")
    assert (read.google_click.value if read.google_click else None) == (
        google_click["value"] if google_click else None)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        node = record
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        node = record
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
    return change


REQUIRED = ["v", "conversion_id", "audience", "person_key", "user_id", "anonymous_id",
            "entry_ts", "conversion_time", "destinations", "clicks", "matching"]
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    **{f"no {field}": _drop((field,)) for field in REQUIRED},
    "unknown field": _set(("traits",), {"email": "x"}),
    "version 2": _set(("v",), 2),
    "version true": _set(("v",), True),
    "id not cbc_": _set(("conversion_id",), "evt_1"),
    "audience key": _set(("audience",), "Bad-Key"),
    "empty person": _set(("person_key",), ""),
    "numeric user id": _set(("user_id",), 5),
    "entry as text": _set(("entry_ts",), "1795168800"),
    "entry as float": _set(("entry_ts",), 1.5),
    "entry as bool": _set(("entry_ts",), True),
    "time not rfc3339": _set(("conversion_time",), "2026-11-20 09:00:00"),
    "no destination": _set(("destinations",), {}),
    "unknown destination": _set(("destinations", "tiktok"), {}),
    "pixel not digits": _set(("destinations", "meta", "pixel_id"), "12a"),
    "no event name": _drop(("destinations", "meta", "event_name")),
    "empty event name": _set(("destinations", "meta", "event_name"), ""),
    "no action source": _drop(("destinations", "meta", "action_source")),
    "unknown action source": _set(("destinations", "meta", "action_source"), "web"),
    "meta extra field": _set(("destinations", "meta", "token"), "x"),
    "custom data a list": _set(("destinations", "meta", "custom_data"), [1]),
    "no api": _drop(("destinations", "google", "api")),
    "unknown api": _set(("destinations", "google", "api"), "rest"),
    "customer with dashes": _set(("destinations", "google", "customer_id"), "123-456-7890"),
    "customer a number": _set(("destinations", "google", "customer_id"), 1234567890),
    "login not digits": _set(("destinations", "google", "login_customer_id"), "abc"),
    "negative value": _set(("destinations", "google", "value"), -1),
    "value as text": _set(("destinations", "google", "value"), "250"),
    "lower-case currency": _set(("destinations", "google", "currency"), "usd"),
    "consent value": _set(("destinations", "google", "consent", "ad_user_data"), "YES"),
    "consent extra": _set(("destinations", "google", "consent", "other"), "CONSENT_DENIED"),
    "google extra field": _set(("destinations", "google", "developer_token"), "x"),
    "google click type": _set(("clicks", "google", "type"), "fbclid"),
    "click with a blank": _set(("clicks", "google", "value"), "a b"),
    "click time as text": _set(("clicks", "google", "observed_at_ms"), "x"),
    "click extra field": _set(("clicks", "google", "gbraid"), "x"),
    "fbc malformed": _set(("clicks", "fbc", "value"), "fb.x"),
    "fbc without source": _drop(("clicks", "fbc", "source")),
    "fbc source": _set(("clicks", "fbc", "source"), "other"),
    "unknown click": _set(("clicks", "ttclid"), {"type": "ttclid", "value": "x",
                                                 "observed_at_ms": 1}),
    "context extra": _set(("context", "referrer"), "https://x.example"),
    "context url": _set(("context", "event_source_url"), "ftp://x.example"),
    "context ip a number": _set(("context", "client_ip_address"), 5),
    "raw email": _set(("matching", "meta", "em"), "grace@gmail.com"),
    "upper-case hash": _set(("matching", "google", "email_address"), "A" * 64),
    "unknown meta key": _set(("matching", "meta", "zz"), "a" * 64),
    "unknown platform keys": _set(("matching", "tiktok"), {}),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_reader_refuses_what_the_schema_refuses(name: str) -> None:
    record = copy.deepcopy(build(audience("both_7d")))
    MUTATIONS[name](record)
    assert not schema_accepts(record), f"the schema takes it: {name}"
    with pytest.raises(UnreadableRecord):
        read_record(record)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in _leaves(value, (*path, key))]
    return [path]


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 2_000_000_000_000),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=8), st.just("a" * 64), st.just([]), st.just({}))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_reader_and_schema_agree_on_any_one_field_changed(data: st.DataObject) -> None:
    record = copy.deepcopy(data.draw(st.sampled_from(samples())))
    path = data.draw(st.sampled_from(_leaves(record)))
    _set(path, data.draw(JSON_VALUES))(record)
    assert reader_accepts(record) == schema_accepts(record), (path, record)


@pytest.mark.parametrize("value", [None, [], "text", 3, {"v": 1}])
def test_anything_else_is_refused_with_the_field_named(value: Any) -> None:
    with pytest.raises(UnreadableRecord):
        read_record(value)
