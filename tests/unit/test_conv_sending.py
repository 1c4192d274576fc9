"""What each platform is sent for a conversion, and what each answer means."""

from __future__ import annotations

import time
from typing import Any

import pytest

from processor.core.conversions.record import read_record
from processor.core.conversions.sending import (
    Account,
    Api,
    Destination,
    account_of,
    ads_body,
    ads_row,
    datamanager_body,
    datamanager_event,
    google_not_before_ms,
    identifiable,
    match_keys,
    meta_body,
    meta_event,
    meta_too_old,
)
from processor.core.conversions.verdicts import (
    Kind,
    Token,
    google_answer,
    meta_answer,
    token_answer,
)
from processor.devkit.conversion_samples import ACTION, CUSTOMER, PIXEL, sha
from processor.devkit.google_errors import (
    Rejected,
    Violation,
    ads_error,
    ads_failure,
    ads_request_error,
    auth_error,
    datamanager_error,
)
from tests.senders import conversion


def read(n: int = 1, audience: str = "both_7d", **fields: Any) -> Any:
    return read_record(conversion(n, audience, **fields))


def test_a_meta_event() -> None:
    record = conversion(1)
    event = meta_event(read_record(record), time.time())
    assert event == {
        "event_name": "Lead", "event_time": record["entry_ts"],
        "event_id": record["conversion_id"], "action_source": "website",
        "event_source_url": "https://www.shop.example/pricing",
        "user_data": {"em": sha("person1@example.com"), "external_id": sha("user-1"),
                      "client_ip_address": "203.0.113.7",
                      "client_user_agent": "Mozilla/5.0 (X11; Linux)",
                      "fbc": record["clicks"]["fbc"]["value"]},
        "custom_data": {"value": 250, "currency": "USD"}}
    assert meta_body([event], "") == {"data": [event]}
    assert meta_body([event], "TEST123") == {"data": [event], "test_event_code": "TEST123"}


def test_an_entry_ahead_of_the_clock_is_sent_within_metas_minute() -> None:
    now = time.time()
    event = meta_event(read(entry_ts=int(now) + 240), now)
    assert event["event_time"] <= now + 60


def test_a_data_manager_event_and_request() -> None:
    record = conversion(1)
    conversion_ = read_record(record)
    event = datamanager_event(conversion_)
    assert event == {
        "transactionId": record["conversion_id"], "eventTimestamp": record["conversion_time"],
        "eventSource": "WEB", "adIdentifiers": {"gclid": "Cj0K-1-"},
        "userData": {"userIdentifiers": [{"emailAddress": sha("person1@example.com")}]},
        "conversionValue": 250.0, "currency": "USD",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}}
    account = account_of(conversion_, Destination.GOOGLE)
    assert account == Account(Destination.GOOGLE, Api.DATA_MANAGER, CUSTOMER, ACTION)
    assert datamanager_body(account, [event], validate_only=True) == {
        "destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS",
                                               "accountId": CUSTOMER},
                          "productDestinationId": ACTION}],
        "encoding": "HEX", "events": [event], "validateOnly": True}


def test_a_google_ads_row() -> None:
    record = conversion(2, "ads_30d", google_click="gbraid")
    conversion_ = read_record(record)
    row = ads_row(conversion_)
    assert row["conversionAction"] == f"customers/{CUSTOMER}/conversionActions/{ACTION}"
    assert row["orderId"] == record["conversion_id"]
    assert row["gbraid"] == "Cj0K-2-"
    assert not {"gclid", "wbraid"} & set(row)  # exactly one click id
    assert row["userIdentifiers"] == [{"hashedEmail": sha("person2@example.com")}]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(record["entry_ts"]))
    assert row["conversionDateTime"] == stamp
    assert ads_body([row], validate_only=False) == {"conversions": [row],
                                                    "partialFailure": True}
    assert account_of(conversion_, Destination.GOOGLE) == Account(
        Destination.GOOGLE, Api.ADS, CUSTOMER, login="1112223333")


def test_the_ads_api_spells_consent_its_own_way() -> None:
    record = conversion(3, "ads_30d")
    record["destinations"]["google"] = {**record["destinations"]["google"], "consent": {
        "ad_user_data": "CONSENT_DENIED", "ad_personalization": "CONSENT_GRANTED"}}
    assert ads_row(read_record(record))["consent"] == {"adUserData": "DENIED"}


def test_when_each_platform_may_be_sent_to() -> None:
    now = time.time()
    assert meta_too_old(read(entry_ts=int(now) - 7 * 86_400), now, 6 * 86_400 + 23 * 3600)
    assert not meta_too_old(read(entry_ts=int(now) - 6 * 86_400), now, 6 * 86_400 + 23 * 3600)
    fresh = read(click_age=60)
    assert fresh.google_click is not None
    assert google_not_before_ms(fresh, 6 * 3600_000) == (
        fresh.google_click.observed_at_ms + 6 * 3600_000)
    assert google_not_before_ms(read(google_click=None), 6 * 3600_000) == 0


def test_match_keys_and_whether_anything_can_be_matched() -> None:
    both = read()
    assert match_keys(both, Destination.META) == (
        "client_ip_address", "client_user_agent", "em", "external_id", "fbc")
    assert match_keys(both, Destination.GOOGLE) == ("email_address", "gclid")
    bare = read(2, "google_30d", google_click=None, keys=False)
    assert not identifiable(bare, Destination.GOOGLE)
    assert identifiable(read(3, "google_30d", keys=False), Destination.GOOGLE)


# --- what the answers mean ---------------------------------------------------------------


def graph_error(code: int, subcode: int | None = None, transient: bool = False) -> Any:
    error: dict[str, Any] = {"message": "m", "code": code, "is_transient": transient,
                             "fbtrace_id": "T"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.parametrize(("status", "body", "kind", "code"), [
    (200, {"events_received": 3, "fbtrace_id": "T"}, Kind.ACCEPTED, ""),
    (200, {"events_received": 2, "fbtrace_id": "T"}, Kind.TRANSIENT,
     "meta_events_received_mismatch"),
    (400, graph_error(17, 2446079, True), Kind.THROTTLED, "meta_17_2446079"),
    (403, graph_error(4, transient=True), Kind.THROTTLED, "meta_4"),
    (400, graph_error(613, transient=True), Kind.THROTTLED, "meta_613"),
    (429, None, Kind.THROTTLED, "meta_unreadable_answer"),
    (400, graph_error(190), Kind.REFUSED, "meta_190"),
    (401, graph_error(190), Kind.REFUSED, "meta_190"),
    (400, graph_error(104), Kind.REFUSED, "meta_104"),
    (403, graph_error(10), Kind.REFUSED, "meta_10"),
    (400, graph_error(100, 33), Kind.REFUSED, "meta_100_33"),
    (400, graph_error(100, 2804001), Kind.REJECTED, "meta_100_2804001"),
    (400, graph_error(100), Kind.REJECTED, "meta_100"),
    (500, graph_error(1, transient=True), Kind.TRANSIENT, "meta_1"),
    (503, graph_error(2, transient=True), Kind.TRANSIENT, "meta_2"),
    (400, graph_error(100, transient=True), Kind.TRANSIENT, "meta_100"),
    (502, None, Kind.TRANSIENT, "meta_unreadable_answer"),
    (400, "<html>", Kind.TRANSIENT, "meta_unreadable_answer"),
])
def test_metas_answers(status: int, body: Any, kind: Kind, code: str) -> None:
    verdict = meta_answer(status, body, 3)
    assert (verdict.kind, verdict.code, verdict.status) == (kind, code, str(status))


def dm_error(status: int, reason: str, field: str | None = None) -> Any:
    violations = (Violation(field, reason, "d"),) if field else ()
    return datamanager_error(Rejected(status, reason, "m", violations), "req-1")


@pytest.mark.parametrize(("status", "body", "kind", "code"), [
    (200, {"requestId": "r-1"}, Kind.ACCEPTED, ""),
    (200, {}, Kind.ACCEPTED, ""),  # validateOnly
    (400, dm_error(400, "INVALID_SHA256_FORMAT", "events[3].user_data"), Kind.REJECTED,
     "google_invalid_sha256_format"),
    (400, dm_error(400, "INVALID_ARGUMENT"), Kind.REJECTED, "google_invalid_argument"),
    (429, dm_error(429, "RESOURCE_EXHAUSTED"), Kind.THROTTLED, "google_resource_exhausted"),
    (401, auth_error("expired"), Kind.EXPIRED, "google_access_token_expired"),
    (401, auth_error("invalid"), Kind.EXPIRED, "google_access_token_type_unsupported"),
    (403, dm_error(403, "PERMISSION_DENIED"), Kind.REFUSED, "google_permission_denied"),
    (403, dm_error(403, "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"), Kind.REFUSED,
     "google_customer_not_allowlisted_for_this_feature"),
    (400, dm_error(400, "INVALID_DESTINATION"), Kind.REFUSED, "google_invalid_destination"),
    (500, dm_error(500, "INTERNAL_ERROR"), Kind.TRANSIENT, "google_internal_error"),
    (503, None, Kind.TRANSIENT, "google_unreadable_answer"),
    (401, ads_request_error(401, "v26", "DEVELOPER_TOKEN_INVALID", "m", "r"), Kind.REFUSED,
     "google_developer_token_invalid"),
    (400, ads_request_error(400, "v26", "TOO_MANY_CONVERSIONS_IN_REQUEST", "m", "r"),
     Kind.REJECTED, "google_too_many_conversions_in_request"),
])
def test_googles_answers(status: int, body: Any, kind: Kind, code: str) -> None:
    verdict = google_answer(status, body, 3)
    assert (verdict.kind, verdict.code) == (kind, code)


def test_a_google_ads_partial_failure_gives_each_row_its_verdict() -> None:
    names = ["ORDER_ID_ALREADY_IN_USE", "TOO_RECENT_EVENT", "INTERNAL_ERROR",
             "NO_CONVERSION_ACTION_FOUND", "CLICK_NOT_FOUND"]
    errors = [ads_error(name, "m", [("conversions", i + 1)]) for i, name in enumerate(names)]
    body = {"results": [{"gclid": "a"}, *({} for _ in names)], "jobId": "9",
            "partialFailureError": {"code": 3, "message": "m",
                                    "details": [ads_failure("v26", errors, "r")]}}
    verdict = google_answer(200, body, 6)
    assert verdict.kind is Kind.ROWS
    assert [(r.kind, r.code) for r in verdict.rows] == [
        (Kind.ACCEPTED, ""), (Kind.DUPLICATE, "google_order_id_already_in_use"),
        (Kind.TOO_RECENT, "google_too_recent_event"), (Kind.TRANSIENT, "google_internal_error"),
        (Kind.REFUSED, "google_no_conversion_action_found"),
        (Kind.REJECTED, "google_click_not_found")]
    assert google_answer(200, {"results": [{}, {}], "jobId": "9"}, 2).kind is Kind.ACCEPTED


def test_the_token_endpoints_answers() -> None:
    token = token_answer(200, {"access_token": "ya29.secret", "expires_in": 3599})
    assert isinstance(token, Token)
    assert token.expires_in == 3599
    assert "ya29" not in repr(token)
    for status, error, kind in ((400, "invalid_grant", Kind.REFUSED),
                                (401, "invalid_client", Kind.REFUSED),
                                (429, "rate_limit", Kind.THROTTLED),
                                (503, "server_error", Kind.TRANSIENT)):
        verdict = token_answer(status, {"error": error})
        assert not isinstance(verdict, Token)
        assert (verdict.kind, verdict.code) == (kind, f"google_oauth_{error}")


def test_the_pixel_is_the_meta_account() -> None:
    assert account_of(read(), Destination.META) == Account(Destination.META, Api.META, PIXEL)
