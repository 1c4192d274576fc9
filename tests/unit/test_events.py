"""Validation and classification of Identify events, and the shape of the output event."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core.enrichment.emails import is_valid, normalise
from processor.core.enrichment.events import (
    LookupRequest,
    classify,
    destination_enabled,
    enriched_event,
    output_key,
    output_message_id,
    output_traits,
)
from processor.core.enrichment.outcomes import SkipReason
from processor.core.errors import (
    InvalidEmailError,
    InvalidFieldError,
    MissingIdentityError,
    RecordError,
)
from tests.fakes import identify


def test_an_enrichable_identify() -> None:
    decision = classify(identify("  Ada.Lovelace@Example.COM "))
    assert decision == LookupRequest("ada.lovelace@example.com", "user-1", None, "msg-1")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": "track", "event": "Signed Up"}, SkipReason.NOT_IDENTIFY),
        (identify(None), SkipReason.NO_EMAIL),
        (identify(""), SkipReason.NO_EMAIL),
        (identify("   "), SkipReason.NO_EMAIL),
        ({"type": "identify", "userId": "u"}, SkipReason.NO_EMAIL),
        (identify(integrations={"Clearbit Enrichment": False}), SkipReason.INTEGRATION_DISABLED),
        (identify(integrations={"Clearbit": False}), SkipReason.INTEGRATION_DISABLED),
        (identify(integrations={"All": False}), SkipReason.INTEGRATION_DISABLED),
        (identify(integrations={"All": False, "Clearbit": True}),
         SkipReason.INTEGRATION_DISABLED),
        # A disabled destination is skipped even when the rest of the event is broken.
        ({"type": "identify", "integrations": {"Clearbit Enrichment": False}},
         SkipReason.INTEGRATION_DISABLED),
    ],
)
def test_skips(event: dict[str, Any], reason: SkipReason) -> None:
    assert classify(event) == reason


@pytest.mark.parametrize(
    "integrations",
    [
        {},
        {"All": True},
        {"All": False, "Clearbit Enrichment": True},
        {"All": False, "Clearbit Enrichment": {"someSetting": 1}},
        {"Salesforce": False},
        {"clearbit enrichment": False},  # keys are case-sensitive
    ],
)
def test_destination_stays_on(integrations: dict[str, Any]) -> None:
    assert destination_enabled(integrations)
    assert isinstance(classify(identify(integrations=integrations)), LookupRequest)


@pytest.mark.parametrize(
    ("event", "error", "reason"),
    [
        ({"userId": "u"}, InvalidFieldError, "invalid_field"),
        ({"type": 7}, InvalidFieldError, "invalid_field"),
        (identify(userId=42), InvalidFieldError, "invalid_field"),
        (identify(anonymousId=["a"]), InvalidFieldError, "invalid_field"),
        (identify(messageId=1), InvalidFieldError, "invalid_field"),
        (identify(traits="ada@example.com"), InvalidFieldError, "invalid_field"),
        (identify(integrations=["Clearbit"]), InvalidFieldError, "invalid_field"),
        (identify(123), InvalidFieldError, "invalid_field"),
        (identify(userId=None), MissingIdentityError, "missing_identity"),
        (identify(userId=""), MissingIdentityError, "missing_identity"),
        (identify("not-an-email"), InvalidEmailError, "invalid_email"),
        (identify("ada@localhost"), InvalidEmailError, "invalid_email"),
        (identify("ada@@example.com"), InvalidEmailError, "invalid_email"),
        (identify("a b@example.com"), InvalidEmailError, "invalid_email"),
    ],
)
def test_dead_letters(event: dict[str, Any], error: type[RecordError], reason: str) -> None:
    with pytest.raises(error) as raised:
        classify(event)
    assert raised.value.reason == reason


def test_invalid_email_message_does_not_carry_the_address() -> None:
    with pytest.raises(InvalidEmailError) as raised:
        classify(identify("secret.person@@example.com"))
    assert "secret.person" not in str(raised.value)


def test_anonymous_only_identify_is_enriched() -> None:
    decision = classify(identify(userId=None, anonymousId="anon-9"))
    assert isinstance(decision, LookupRequest)
    assert decision.anonymous_id == "anon-9"


@pytest.mark.parametrize(
    ("email", "valid"),
    [
        ("ada@example.com", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("o'brien@example.ie", True),
        ("x@xn--80ak6aa92e.com", True),
        ("ada@example", False),
        ("ada@example.c", False),
        (".ada@example.com", False),
        ("ada.@example.com", False),
        ("a..da@example.com", False),
        ("ada@-example.com", False),
        ("ada@example..com", False),
        ("ada@[127.0.0.1]", False),
        ("adä@example.com", False),
        ("a" * 65 + "@example.com", False),
        ("a@" + "b" * 250 + ".com", False),
    ],
)
def test_email_syntax(email: str, valid: bool) -> None:
    assert is_valid(normalise(email)) is valid


@given(st.text(max_size=300))
def test_email_check_never_raises(text: str) -> None:
    is_valid(normalise(text))


@given(st.dictionaries(st.text(max_size=10), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=15)))
def test_classify_never_raises_anything_but_a_record_error(event: dict[str, Any]) -> None:
    for candidate in (event, {**event, "type": "identify"}):
        with contextlib.suppress(RecordError):
            classify(candidate)


@given(st.text(max_size=120))
def test_output_message_id_is_exactly_uuid5(seed: str) -> None:
    from processor.core.enrichment.events import _MESSAGE_ID_NAMESPACE

    expected = f"clearbit-{uuid.uuid5(_MESSAGE_ID_NAMESPACE, seed)}" if seed else None
    if expected:
        assert output_message_id(seed, "t[0]@1") == expected


def test_output_message_id_is_deterministic_and_new() -> None:
    first = output_message_id("msg-1", "t[0]@5")
    assert first == output_message_id("msg-1", "t[0]@9")
    assert first != "msg-1"
    assert first != output_message_id("msg-2", "t[0]@5")
    assert len(first) <= 100
    # Without a messageId the record's coordinates make it deterministic.
    assert output_message_id(None, "t[0]@5") == output_message_id(None, "t[0]@5")
    assert output_message_id(None, "t[0]@5") != output_message_id(None, "t[0]@6")


def test_output_key_falls_back_to_identity() -> None:
    request = LookupRequest("a@example.com", "user-1", "anon-1", None)
    assert output_key(b"k", request) == b"k"
    assert output_key(None, request) == b"user-1"
    assert output_key(None, request._replace(user_id=None)) == b"anon-1"


def test_enriched_event_shape() -> None:
    request = LookupRequest("ada@example.com", "user-1", "anon-1", "msg-1")
    traits = output_traits(request.email, {"clearbit_person_id": "p1"})
    event = enriched_event(request, traits, "clearbit-x", "2026-11-23T10:00:00.000Z")
    assert event == {
        "type": "identify",
        "messageId": "clearbit-x",
        "timestamp": "2026-11-23T10:00:00.000Z",
        "userId": "user-1",
        "anonymousId": "anon-1",
        "traits": {"email": "ada@example.com", "clearbit_person_id": "p1"},
        "integrations": {"Clearbit Enrichment": False},
    }
    # The output itself is never enriched again.
    assert classify(event) == SkipReason.INTEGRATION_DISABLED
