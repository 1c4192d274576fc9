"""Match keys: the golden vectors of Meta's and Google's documentation, exactly."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.conversions.matching import (
    SOURCE_TRAITS,
    Dropped,
    DropReason,
    MatchKeys,
    Platform,
    already_hashed,
    google_email,
    google_phone,
    known_region,
    match_keys,
    meta_email,
    meta_external_id,
    meta_name,
    meta_phone,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- golden vectors (Meta: Customer Information Parameters; Google: Format user data) ---

def test_meta_email_vector() -> None:
    keys = match_keys({"email": "John_Smith@gmail.com"}).keys
    assert keys.meta["em"] == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def test_meta_phone_vector() -> None:
    assert meta_phone("(650)555-1212", "US") == "16505551212"
    keys = match_keys({"phone": "(650)555-1212"}, region="US").keys
    assert keys.meta["ph"] == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com"),
        ("  Cloudy.SanFrancisco@GoogleMail.com ", "cloudysanfrancisco@googlemail.com"),
        ("jo hn@gmail.com", "john@gmail.com"),
    ],
)
def test_google_email_vectors(raw: str, normalised: str) -> None:
    assert google_email(raw) == normalised
    assert match_keys({"email": raw}).keys.google["email_address"] == sha(normalised)


def test_google_phone_vector() -> None:
    assert google_phone("(800)555-0100", "US") == "+18005550100"
    assert match_keys({"phone": "(800)555-0100"}).keys.google["phone_number"] == sha(
        "+18005550100")


def test_meta_name_vector_keeps_accents_in_utf8() -> None:
    assert meta_name("Valéry") == "valéry"
    assert match_keys({"firstName": "Valéry"}).keys.meta["fn"] == sha("valéry")
    # The same name typed with a combining accent hashes the same.
    assert meta_name("Vale\u0301ry") == "valéry"


# --- the rules around them --------------------------------------------------------------

def test_meta_has_no_gmail_rule() -> None:
    assert meta_email(" Cloudy.SF+shop@Gmail.com ") == "cloudy.sf+shop@gmail.com"


def test_google_gmail_rule_applies_to_gmail_only() -> None:
    assert google_email("a.b+c@gmail.com.evil.example") == "a.b+c@gmail.com.evil.example"
    assert google_email("a.b+c@outlook.com") == "a.b+c@outlook.com"


@pytest.mark.parametrize("raw", ["n/a", "", "unknown", "a@b", "@example.com", "a@@b.com",
                                 "a@b..com", "x" * 65 + "@example.com",
                                 "a@" + "b" * 250 + ".com"])
def test_unusable_emails(raw: str) -> None:
    assert meta_email(raw) is None
    assert google_email(raw) is None


def test_inner_blanks_and_gmail_suffixes_differ_per_platform() -> None:
    assert meta_email("a b@example.com") is None
    assert google_email("a b@example.com") == "ab@example.com"
    assert meta_email("+shopping@gmail.com") == "+shopping@gmail.com"
    assert google_email("+shopping@gmail.com") is None


def test_international_and_national_phones() -> None:
    assert meta_phone("+44 20 7946 0958", "US") == "442079460958"
    assert meta_phone("020 7946 0958", "GB") == "442079460958"
    assert google_phone("020 7946 0958", "GB") == "+442079460958"
    assert meta_phone("020 7946 0958", "US") is None  # a US reading of a UK number
    assert google_phone("12", "US") is None
    assert google_phone("call me", "US") is None


def test_names_lose_punctuation_and_surrounding_blanks() -> None:
    assert meta_name("  O'Brien-Smith ") == "obriensmith"
    assert meta_name("Mary   Ann") == "mary ann"
    assert meta_name("...") is None


def test_external_id_from_user_id() -> None:
    assert meta_external_id(" User 42 ") == "user42"
    keys = match_keys({}, user_id="User-42").keys
    assert keys.meta == {"external_id": sha("user-42")}
    assert keys.google == {}


def test_a_hash_made_upstream_passes_through_lower_cased() -> None:
    upstream = sha("someone@example.com").upper()
    keys = match_keys({"email": upstream, "phone": f" {upstream} "}).keys
    assert keys.meta["em"] == upstream.lower()
    assert keys.google["email_address"] == upstream.lower()
    assert keys.google["phone_number"] == upstream.lower()
    assert already_hashed("g" * 64) is None
    assert already_hashed("a" * 63) is None


def test_unusable_values_are_dropped_and_reported_never_hashed() -> None:
    update = match_keys({"email": "not an email", "phone": "12", "lastName": "--",
                         "firstName": ["Ada"]})
    assert update.keys == MatchKeys()
    assert set(update.dropped) == {
        Dropped(Platform.META, "em", DropReason.INVALID_EMAIL),
        Dropped(Platform.GOOGLE, "email_address", DropReason.INVALID_EMAIL),
        Dropped(Platform.META, "ph", DropReason.INVALID_PHONE),
        Dropped(Platform.GOOGLE, "phone_number", DropReason.INVALID_PHONE),
        Dropped(Platform.META, "ln", DropReason.INVALID_NAME),
        Dropped(Platform.META, "fn", DropReason.INVALID_NAME),
    }


def test_a_phone_stored_as_a_number_is_read() -> None:
    assert match_keys({"phone": 16505551212}).keys.meta["ph"] == sha("16505551212")
    assert match_keys({"phone": True}).keys == MatchKeys()


def test_partial_identifies_update_only_what_they_carry() -> None:
    first = match_keys({"email": "ada@example.com", "phone": "(650)555-1212",
                        "first_name": "Ada"}, user_id="u1").keys
    second = first.updated({"phone": None, "email": ""}).keys
    assert second.meta == {"fn": sha("ada"), "external_id": sha("u1")}
    assert second.google == {}
    third = second.updated({"email": "bad"}).keys
    assert "em" not in third.meta
    assert first.updated({"lastName": "Lovelace"}).keys.meta["em"] == first.meta["em"]


def test_spec_names_win_over_snake_case() -> None:
    keys = match_keys({"firstName": "Ada", "first_name": "Grace"}).keys
    assert keys.meta["fn"] == sha("ada")


def test_store_form_round_trips_and_refuses_raw_values() -> None:
    keys = match_keys({"email": "ada@example.com", "phone": "(650)555-1212"}, "u1").keys
    assert MatchKeys.from_json(keys.to_json()) == keys
    corrupt = {"meta": {"em": "ada@example.com", "zz": sha("x"), "ph": sha("1")},
               "google": {"email_address": 5}}
    assert MatchKeys.from_json(corrupt) == MatchKeys({"ph": sha("1")}, {})
    assert MatchKeys.from_json(["nope"]) == MatchKeys()


def test_source_traits_name_every_raw_input() -> None:
    assert {"email", "phone", "firstName", "first_name", "lastName", "last_name"} == set(
        SOURCE_TRAITS)


def test_known_region() -> None:
    assert known_region("US")
    assert known_region("GB")
    assert not known_region("ZZ")
    assert not known_region("us")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)  # the first number of a region loads its metadata
@given(st.dictionaries(st.sampled_from(sorted(SOURCE_TRAITS)) | st.text(), json_values),
       st.none() | st.text(), st.sampled_from(["US", "GB", "DE", "ZZ"]))
def test_any_traits_give_only_hashes(traits: dict[str, Any], user_id: str | None,
                                     region: str) -> None:
    update = match_keys(traits, user_id, region)
    for value in [*update.keys.meta.values(), *update.keys.google.values()]:
        assert already_hashed(value) == value
    assert MatchKeys.from_json(update.keys.to_json()) == update.keys
