"""The conversions-topic record: built from an entry, valid against its schema, and free
of any raw email, phone number or name."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.conversions.audiences import Audience, parse_audiences
from processor.core.conversions.clicks import ClickSet, extract
from processor.core.conversions.entries import Outcome, decide
from processor.core.conversions.matching import match_keys
from processor.core.conversions.record import SCHEMA, build_record
from processor.core.conversions.visits import visit_of

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DAY_MS = 86_400_000
TTL_MS = 90 * DAY_MS
NOW = 1_795_168_800  # 2026-11-20T10:00:00Z
ENTRY_TS = NOW - 3600
CLICK_MS = (NOW - 2 * 86_400) * 1000

EMAIL = "Grace.Hopper+Navy@Gmail.com"
PHONE = "(650) 555-1212"
FIRST, LAST = "Grace", "Hopper"
RAW_FORMS = ["grace", "hopper", "gracehopper", "grace.hopper", "navy@gmail", "6505551212",
             "650) 555", "650-555"]

AUDIENCES = parse_audiences("""
version: 1
audiences:
  - key: both_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations:
      meta: {pixel_id: "1234567890", event_name: Lead, custom_data: {value: 250, currency: USD}}
      google: {customer_id: "123-456-7890", conversion_action_id: "987654321", value: 250,
               currency: USD, login_customer_id: "1112223333",
               consent: {ad_user_data: CONSENT_GRANTED, ad_personalization: CONSENT_DENIED}}
  - key: google_30d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 30d
    destinations: {google: {api: ads, customer_id: "1", conversion_action_id: "2"}}
  - key: meta_1d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 1d
    destinations: {meta: {pixel_id: "3", event_name: Purchase}}
""")


@cache
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / SCHEMA).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def landing(url: str, at_ms: int = CLICK_MS, **context: Any) -> dict[str, Any]:
    return {"type": "page", "anonymousId": "anon-1", "timestamp": at_ms / 1000,
            "context": {"page": {"url": url}, **context}}


def build(audience: Audience, events: list[dict[str, Any]] | None = None,
          identify_traits: dict[str, Any] | None = None) -> dict[str, Any]:
    events = events if events is not None else [landing(
        "https://www.shop.example/lp?gclid=Cj0KCQ-Ab_9&fbclid=IwAR0-Zz&email=grace.hopper%40gmail.com",
        ip="203.0.113.7", userAgent="Mozilla/5.0 (X11)")]
    clicks = ClickSet()
    visit = None
    for event in events:
        clicks = clicks.merged(extract(event, 0))
        seen = visit_of(event, 0)
        visit = seen.newer(visit) if seen else visit
    traits = identify_traits if identify_traits is not None else {
        "email": EMAIL, "phone": PHONE, "firstName": FIRST, "lastName": LAST,
        "lifecycle": "MQL", "mql_at": ENTRY_TS}
    decision = decide(audience, "user-42", traits, {}, NOW)
    assert decision.outcome is Outcome.ENTERED
    assert decision.entry is not None
    return build_record(decision.entry, audience, user_id="user-42", anonymous_id="anon-1",
                        clicks=clicks.attach(decision.entry.ts, NOW * 1000, TTL_MS),
                        visit=visit, keys=match_keys(traits, "user-42").keys)


def audience(key: str) -> Audience:
    found = AUDIENCES.get(key)
    assert found is not None
    return found


def test_a_record_for_meta_and_google() -> None:
    record = build(audience("both_7d"))
    assert list(validator().iter_errors(record)) == []
    keys = match_keys({"email": EMAIL, "phone": PHONE, "firstName": FIRST,
                       "lastName": LAST}, "user-42").keys
    assert record["conversion_id"].startswith("cbc_")
    assert record["person_key"] == "user-42"
    assert record["entry_ts"] == ENTRY_TS
    assert record["conversion_time"] == "2026-11-20T09:00:00Z"
    assert record["destinations"]["meta"] == {
        "pixel_id": "1234567890", "event_name": "Lead", "action_source": "website",
        "custom_data": {"value": 250, "currency": "USD"}}
    assert record["destinations"]["google"] == {
        "api": "data_manager", "customer_id": "1234567890", "conversion_action_id": "987654321",
        "login_customer_id": "1112223333", "value": 250.0, "currency": "USD",
        "consent": {"ad_user_data": "CONSENT_GRANTED", "ad_personalization": "CONSENT_DENIED"}}
    assert record["clicks"] == {
        "google": {"type": "gclid", "value": "Cj0KCQ-Ab_9", "observed_at_ms": CLICK_MS},
        "fbc": {"type": "fbc", "value": f"fb.1.{CLICK_MS}.IwAR0-Zz",
                "observed_at_ms": CLICK_MS, "source": "fbclid"},
    }
    assert record["context"] == {"client_ip_address": "203.0.113.7",
                                 "client_user_agent": "Mozilla/5.0 (X11)",
                                 "event_source_url": "https://www.shop.example/lp"}
    assert record["matching"] == {"meta": dict(keys.meta), "google": dict(keys.google)}
    assert set(record["matching"]["meta"]) == {"em", "ph", "fn", "ln", "external_id"}


@pytest.mark.parametrize("key", ["both_7d", "google_30d", "meta_1d"])
def test_no_raw_email_phone_or_name_anywhere(key: str) -> None:
    text = json.dumps(build(audience(key))).lower()
    assert EMAIL.lower() not in text
    for raw in RAW_FORMS:
        assert raw not in text, raw


def test_a_google_only_record_carries_nothing_for_meta() -> None:
    events = [landing("https://a.example/?fbclid=IwAR&wbraid=WB1",
                      ip="203.0.113.7", userAgent="UA"),
              {"properties": {"fbp": "fb.1.1795000000000.123"}, "timestamp": CLICK_MS}]
    record = build(audience("google_30d"), events)
    assert list(validator().iter_errors(record)) == []
    assert set(record["destinations"]) == {"google"}
    assert record["clicks"] == {"google": {"type": "wbraid", "value": "WB1",
                                           "observed_at_ms": CLICK_MS}}
    assert set(record["matching"]) == {"google"}
    assert "context" not in record


def test_a_meta_only_record_without_browser_context_is_system_generated() -> None:
    record = build(audience("meta_1d"), events=[])
    assert list(validator().iter_errors(record)) == []
    assert record["destinations"]["meta"]["action_source"] == "system_generated"
    assert record["context"] == {}
    assert record["clicks"] == {}
    assert set(record["matching"]) == {"meta"}


def test_a_newer_fbc_cookie_and_fbp_are_sent_as_captured() -> None:
    cookie = "fb.1.1795000000000.IwAR-cookie"
    events = [landing("https://a.example/?fbclid=IwAR-old", userAgent="UA"),
              landing("https://a.example/next", CLICK_MS + 1000, userAgent="UA",
                      clientIds={"fbc": cookie, "fbp": "fb.1.1795000000000.42"})]
    record = build(audience("meta_1d"), events)
    assert list(validator().iter_errors(record)) == []
    assert record["clicks"]["fbc"] == {"type": "fbc", "value": cookie,
                                       "observed_at_ms": CLICK_MS + 1000, "source": "cookie"}
    assert record["clicks"]["fbp"]["value"] == "fb.1.1795000000000.42"
    assert record["destinations"]["meta"]["action_source"] == "website"


def test_the_schema_refuses_what_must_not_be_written() -> None:
    record = build(audience("both_7d"))
    raw_email = json.loads(json.dumps(record))
    raw_email["matching"]["meta"]["em"] = "grace@gmail.com"
    extra = {**record, "traits": {"email": EMAIL}}
    two_google_clicks = json.loads(json.dumps(record))
    two_google_clicks["clicks"]["google"]["gbraid"] = "x"
    for bad in (raw_email, extra, two_google_clicks):
        assert list(validator().iter_errors(bad)), bad


def test_every_field_of_the_schema_is_described() -> None:
    schema = json.loads((SCHEMAS / SCHEMA).read_text())

    def described(field: dict[str, Any]) -> bool:
        if "description" in field:
            return True
        if "$ref" in field:
            return "description" in schema["$defs"][field["$ref"].rsplit("/", 1)[1]]
        # a refinement of a described base field (the click type of Google's click)
        return set(field) <= {"enum", "const", "pattern"}

    undescribed = []
    pending: list[tuple[str, Any]] = [("", schema)]
    while pending:
        path, node = pending.pop()
        for name, field in node.get("properties", {}).items():
            if not described(field):
                undescribed.append(f"{path}.{name}")
            pending.append((f"{path}.{name}", field))
        pending.extend((f"{path}/{name}", d) for name, d in node.get("$defs", {}).items())
    assert undescribed == []


def test_an_entry_is_built_with_its_own_audience() -> None:
    decision = decide(audience("meta_1d"), "u", {"lifecycle": "MQL", "mql_at": ENTRY_TS}, {},
                      NOW)
    assert decision.entry is not None
    with pytest.raises(ValueError, match="google_30d"):
        build_record(decision.entry, audience("google_30d"), user_id="u", anonymous_id=None,
                     clicks=ClickSet().attach(ENTRY_TS, NOW * 1000, TTL_MS), visit=None,
                     keys=match_keys({}).keys)


@settings(max_examples=60, deadline=None)
@given(st.text(), st.text(), st.dictionaries(st.sampled_from(
    ["email", "phone", "firstName", "lastName", "x"]), st.text() | st.integers() | st.none()))
def test_records_from_arbitrary_inputs_validate(url: str, agent: str,
                                                traits: dict[str, Any]) -> None:
    events = [landing(url, userAgent=agent, ip=agent)]
    record = build(audience("both_7d"), events, {**traits, "lifecycle": "MQL",
                                                 "mql_at": ENTRY_TS})
    assert list(validator().iter_errors(record)) == []
