"""The Google-compatible server (OAuth token endpoint, Data Manager, Google Ads), over real
HTTP on a free loopback port.

The conversions stage's tests trust it to refuse what Google refuses, in Google's shapes, and
to do what its knobs say. The machinery shared with the Meta server (faults, latency,
refusal, clock, log) is tested in ``test_meta_server.py``; here, what is Google's own.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from processor.devkit.google_server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_DEVELOPER_TOKEN,
    DEFAULT_REFRESH_TOKEN,
    GoogleServer,
)
from tests.devkit_cli import help_text, serving

CUSTOMER = "1234567890"
ACTION = f"customers/{CUSTOMER}/conversionActions/555"
EMAIL_HASH = hashlib.sha256(b"ann@initech.example").hexdigest()
GRANT = {"grant_type": "refresh_token", "client_id": DEFAULT_CLIENT_ID,
         "client_secret": DEFAULT_CLIENT_SECRET, "refresh_token": DEFAULT_REFRESH_TOKEN}
DAY = 86400


@pytest.fixture(scope="module")
def shared_server() -> Iterator[GoogleServer]:
    with GoogleServer() as server:
        yield server


@pytest.fixture
def server(shared_server: GoogleServer) -> GoogleServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def bearer(server: GoogleServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.access_token()}"}


def rfc3339(seconds_ago: float = 3600) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat()


def ads_time(seconds_ago: float = 3600) -> str:
    moment = datetime.fromtimestamp(time.time() - seconds_ago, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")


def destination(**fields: Any) -> dict[str, Any]:
    return {"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CUSTOMER},
            "productDestinationId": "555", **fields}


def dm_event(transaction_id: str = "t1", **fields: Any) -> dict[str, Any]:
    return {"transactionId": transaction_id, "eventTimestamp": rfc3339(),
            "eventSource": "WEB", "adIdentifiers": {"gclid": "gclid-1"},
            "userData": {"userIdentifiers": [{"emailAddress": EMAIL_HASH}]},
            "conversionValue": 12.5, "currency": "EUR", **fields}


def ingest(server: GoogleServer, headers: dict[str, str], *events: dict[str, Any],
           **body: Any) -> httpx.Response:
    payload = {"destinations": [destination()], "encoding": "HEX", "events": list(events),
               **body}
    return httpx.post(server.url + "/v1/events:ingest", json=payload, headers=headers,
                      timeout=10)


def status_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    return error


def dm_reason(response: httpx.Response) -> str:
    details = status_error(response)["details"]
    info = next(d for d in details if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["domain"] == "datamanager.googleapis.com"
    assert any(d["@type"].endswith("google.rpc.RequestInfo") for d in details)
    return str(info["reason"])


def violations(response: httpx.Response) -> list[tuple[str, str]]:
    details = status_error(response)["details"]
    bad = next(d for d in details if d["@type"].endswith("google.rpc.BadRequest"))
    return [(v["field"], v["reason"]) for v in bad["fieldViolations"]]


def conversion(order_id: str = "o1", **fields: Any) -> dict[str, Any]:
    return {"conversionAction": ACTION, "conversionDateTime": ads_time(), "gclid": "gclid-1",
            "orderId": order_id, "conversionValue": 12.5, "currencyCode": "EUR", **fields}


def upload(server: GoogleServer, headers: dict[str, str], *conversions: dict[str, Any],
           customer: str = CUSTOMER, extra: dict[str, str] | None = None,
           **body: Any) -> httpx.Response:
    payload = {"conversions": list(conversions), "partialFailure": True, **body}
    return httpx.post(f"{server.url}/v26/customers/{customer}:uploadClickConversions",
                      json=payload, timeout=10, headers={
                          **headers, "developer-token": DEFAULT_DEVELOPER_TOKEN,
                          "login-customer-id": "9876543210", **(extra or {})})


def ads_errors(body: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(row index, errorCode category, name) of each row error of a partial failure."""
    failure = body["partialFailureError"]
    assert failure["code"] == 3
    (detail,) = failure["details"]
    assert detail["@type"] == ("type.googleapis.com/google.ads.googleads.v26.errors."
                               "GoogleAdsFailure")
    found = []
    for error in detail["errors"]:
        ((category, name),) = error["errorCode"].items()
        path = error["location"]["fieldPathElements"]
        assert path[0]["fieldName"] == "conversions"
        found.append((path[0]["index"], category, name))
    return found


def ads_request_error(response: httpx.Response) -> tuple[str, str]:
    (detail,) = status_error(response)["details"]
    ((category, name),) = detail["errors"][0]["errorCode"].items()
    return category, name


# OAuth


def test_the_refresh_token_grant_issues_a_bearer_token(server: GoogleServer) -> None:
    response = httpx.post(server.token_url, data=GRANT)
    assert response.status_code == 200
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3599)
    assert "auth/datamanager" in body["scope"]
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert ingest(server, headers, dm_event()).status_code == 200


def test_the_client_may_authenticate_with_basic(server: GoogleServer) -> None:
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    response = httpx.post(server.token_url, headers={"Authorization": f"Basic {basic}"},
                          data={"grant_type": "refresh_token",
                                "refresh_token": DEFAULT_REFRESH_TOKEN})
    assert response.status_code == 200


@pytest.mark.parametrize(("change", "status", "error"), [
    ({"client_id": "someone-else"}, 401, "invalid_client"),
    ({"client_secret": "wrong"}, 401, "invalid_client"),
    ({"refresh_token": "revoked"}, 400, "invalid_grant"),
    ({"refresh_token": None}, 400, "invalid_request"),
    ({"grant_type": None}, 400, "invalid_request"),
    ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
])
def test_a_bad_grant_is_refused_as_google_does(server: GoogleServer, change: dict[str, Any],
                                               status: int, error: str) -> None:
    form = {k: v for k, v in {**GRANT, **change}.items() if v is not None}
    response = httpx.post(server.token_url, data=form)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert response.json()["error_description"]
    assert server.config()["tokens_issued"] == 0


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "CREDENTIALS_MISSING"),
    ({"Authorization": "Bearer ya29.not-one-of-ours"}, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
    ({"Authorization": "Basic abc"}, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
], ids=["missing", "not-issued", "not-bearer"])
def test_only_issued_tokens_are_accepted(server: GoogleServer, headers: dict[str, str],
                                         reason: str) -> None:
    for response in (ingest(server, headers, dm_event()),
                     upload(server, headers, conversion())):
        error = status_error(response)
        assert (response.status_code, error["status"]) == (401, "UNAUTHENTICATED")
        assert error["details"][0]["reason"] == reason
        assert error["details"][0]["domain"] == "googleapis.com"
    assert server.events() == []


def test_tokens_expire_on_the_servers_clock_and_renew() -> None:
    with GoogleServer(token_lifetime=60) as server:
        token = httpx.post(server.token_url, data=GRANT).json()
        assert token["expires_in"] == 60
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert ingest(server, headers, dm_event("t1")).status_code == 200
        server.advance_clock(61)
        expired = ingest(server, headers, dm_event("t2"))
        assert expired.status_code == 401
        assert status_error(expired)["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
        assert server.requests()[-1]["bearer"] == "expired"
        renewed = httpx.post(server.token_url, data=GRANT).json()["access_token"]
        assert ingest(server, {"Authorization": f"Bearer {renewed}"},
                      dm_event("t2")).status_code == 200


def test_the_token_lifetime_and_credentials_are_knobs(server: GoogleServer) -> None:
    server.configure(token_lifetime_seconds=5, client_secret="rotated")  # noqa: S106 - made up
    assert httpx.post(server.token_url, data=GRANT).status_code == 401
    response = httpx.post(server.token_url, data={**GRANT, "client_secret": "rotated"})
    assert response.json()["expires_in"] == 5


def test_revoked_tokens_stop_working(server: GoogleServer, bearer: dict[str, str]) -> None:
    server.configure(revoke_tokens=True)
    assert ingest(server, bearer, dm_event()).status_code == 401


def test_no_secret_reaches_the_log_config_or_events(server: GoogleServer) -> None:
    access = httpx.post(server.token_url, data=GRANT).json()["access_token"]
    httpx.post(server.token_url, data={**GRANT, "client_secret": "typo-secret"})
    httpx.post(server.token_url, params={"client_secret": DEFAULT_CLIENT_SECRET}, data=GRANT)
    headers = {"Authorization": f"Bearer {access}"}
    ingest(server, headers, dm_event())
    upload(server, headers, conversion())
    upload(server, headers, conversion(), extra={"developer-token": "typo-developer-token"})
    seen = "".join(httpx.get(server.url + path).text for path in ("/_log", "/_config",
                                                                   "/_events"))
    for secret in (DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, DEFAULT_DEVELOPER_TOKEN,
                   access, "typo-secret", "typo-developer-token"):
        assert secret not in seen
    token_line = server.requests(api="token")[0]
    assert (token_line["client_secret"], token_line["refresh_token"]) == ("valid", "valid")
    assert server.requests(api="token")[1]["client_secret"] == "invalid"  # noqa: S105
    assert [line["developer_token"] for line in server.requests(api="ads")] == [
        "valid", "invalid"]


# Data Manager


def test_ingest_answers_a_request_id_and_its_status(server: GoogleServer,
                                                    bearer: dict[str, str]) -> None:
    response = ingest(server, bearer, dm_event("t1"), dm_event("t2"))
    assert response.status_code == 200
    request_id = response.json()["requestId"]
    status = httpx.get(server.url + "/v1/requestStatus:retrieve", headers=bearer,
                       params={"requestId": request_id}).json()
    (per_destination,) = status["requestStatusPerDestination"]
    assert per_destination["requestStatus"] == "SUCCESS"
    assert per_destination["eventsIngestionStatus"] == {"recordCount": "2"}
    assert per_destination["destination"] == destination()
    kept = server.events(api="datamanager")
    assert [(e["transaction_id"], e["conversion_action"]) for e in kept] == [
        ("t1", "555"), ("t2", "555")]
    assert kept[0]["click"] == {"type": "gclid", "id": "gclid-1"}
    assert kept[0]["operating_account"] == CUSTOMER


def test_ingest_deduplicates_by_conversion_action_and_transaction_id(
        server: GoogleServer, bearer: dict[str, str]) -> None:
    ingest(server, bearer, dm_event("t1"), dm_event("t1"))
    ingest(server, bearer, dm_event("t1"))
    assert len(server.events()) == 1
    other = destination(productDestinationId="556")
    ingest(server, bearer, dm_event("t1"), destinations=[other])
    assert len(server.events()) == 2
    assert (server.requests()[-1]["new"], server.requests()[-2]["duplicates"]) == (1, 1)


def test_destination_references_route_events(server: GoogleServer,
                                             bearer: dict[str, str]) -> None:
    two = [destination(reference="a"), destination(reference="b", productDestinationId="7")]
    response = ingest(server, bearer, dm_event("t1", destinationReferences=["b"]),
                      dm_event("t2"), destinations=two)
    assert response.status_code == 200
    assert sorted((e["transaction_id"], e["conversion_action"]) for e in server.events()) == [
        ("t1", "7"), ("t2", "555"), ("t2", "7")]


def test_validate_only_checks_and_stores_nothing(server: GoogleServer,
                                                 bearer: dict[str, str]) -> None:
    response = ingest(server, bearer, dm_event(), validateOnly=True)
    assert (response.status_code, response.json()) == (200, {})
    assert server.events() == []
    bad = ingest(server, bearer, dm_event(transactionId=""), validateOnly=True)
    assert dm_reason(bad) == "REQUIRED_FIELD_MISSING"


def test_an_unknown_request_id(server: GoogleServer, bearer: dict[str, str]) -> None:
    for params, reason in (({"requestId": "nope"}, "INVALID_REQUEST_ID"),
                           ({}, "REQUIRED_FIELD_MISSING")):
        response = httpx.get(server.url + "/v1/requestStatus:retrieve", headers=bearer,
                             params=params)
        assert (response.status_code, dm_reason(response)) == (400, reason)


@pytest.mark.parametrize(("body", "reason", "field"), [
    ({"destinations": []}, "REQUIRED_FIELD_MISSING", "destinations"),
    ({"destinations": [destination()] * 11}, "TOO_MANY_DESTINATIONS", "destinations"),
    ({"destinations": [{"productDestinationId": "555"}]}, "INVALID_DESTINATION",
     "destinations[0].operating_account"),
    ({"destinations": [destination(operatingAccount={"accountType": "GOOGLE_ADS",
                                                     "accountId": "123-456-7890"})]},
     "INVALID_DESTINATION", "destinations[0].operating_account"),
    ({"destinations": [destination(operatingAccount={"accountType": "DATA_PARTNER",
                                                     "accountId": CUSTOMER})]},
     "INVALID_DESTINATION", "destinations[0].operating_account"),
    ({"destinations": [destination(loginAccount={"accountId": "1"})]}, "INVALID_DESTINATION",
     "destinations[0].login_account"),
    ({"destinations": [destination(productDestinationId="Purchase")]},
     "INVALID_CONVERSION_ACTION_ID", "destinations[0].product_destination_id"),
    ({"destinations": [destination(reference="a"), destination(reference="a")]},
     "DUPLICATE_DESTINATION_REFERENCE", "destinations[1].reference"),
    ({"events": []}, "REQUIRED_FIELD_MISSING", "events"),
    ({"encoding": None}, "REQUIRED_FIELD_MISSING", "encoding"),
    ({"encoding": "UTF8"}, "INVALID_ENUM_VALUE", "encoding"),
])
def test_request_checks(server: GoogleServer, bearer: dict[str, str], body: dict[str, Any],
                        reason: str, field: str) -> None:
    payload = {"destinations": [destination()], "encoding": "HEX", "events": [dm_event()],
               **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    response = httpx.post(server.url + "/v1/events:ingest", json=payload, headers=bearer)
    assert (response.status_code, dm_reason(response)) == (400, reason)
    assert violations(response)[0] == (field, reason)


def test_at_most_2000_events(server: GoogleServer, bearer: dict[str, str]) -> None:
    assert ingest(server, bearer, *(dm_event(f"t{i}") for i in range(2000))).status_code == 200
    response = ingest(server, bearer, *(dm_event(f"u{i}") for i in range(2001)))
    assert dm_reason(response) == "TOO_MANY_EVENTS"


def _identifiers(*items: dict[str, Any]) -> dict[str, Any]:
    return {"userData": {"userIdentifiers": list(items)}}


@pytest.mark.parametrize(("fields", "reason", "field"), [
    ({"transactionId": None}, "REQUIRED_FIELD_MISSING", "transaction_id"),
    ({"eventTimestamp": None}, "REQUIRED_FIELD_MISSING", "event_timestamp"),
    ({"eventTimestamp": "2026-01-01 10:00:00+00:00"}, "INVALID_FORMAT", "event_timestamp"),
    ({"eventTimestamp": 1767261600}, "INVALID_FORMAT", "event_timestamp"),
    ({"eventSource": "BROWSER"}, "INVALID_ENUM_VALUE", "event_source"),
    ({"destinationReferences": ["nowhere"]}, "INVALID_ARGUMENT", "destination_references"),
    ({"adIdentifiers": {"gbraid": "g", "wbraid": "w"}}, "INVALID_ARGUMENT", "ad_identifiers"),
    ({"adIdentifiers": {"gclid": "c", "wbraid": "w"}}, "INVALID_ARGUMENT", "ad_identifiers"),
    (_identifiers({"emailAddress": "ann@initech.example"}), "INVALID_SHA256_FORMAT",
     "user_data.user_identifiers[0].email_address"),
    (_identifiers({"emailAddress": EMAIL_HASH}, {"phoneNumber": "+16505551212"}),
     "INVALID_SHA256_FORMAT", "user_data.user_identifiers[1].phone_number"),
    (_identifiers({"emailAddress": EMAIL_HASH[:-1]}), "INVALID_SHA256_FORMAT",
     "user_data.user_identifiers[0].email_address"),
    (_identifiers({"address": {"givenName": "Ann", "familyName": EMAIL_HASH}}),
     "INVALID_SHA256_FORMAT", "user_data.user_identifiers[0].address"),
    (_identifiers({"emailAddress": EMAIL_HASH, "phoneNumber": EMAIL_HASH}),
     "INVALID_ARGUMENT", "user_data.user_identifiers[0]"),
    (_identifiers(*[{"emailAddress": EMAIL_HASH}] * 11), "TOO_MANY_USER_IDENTIFIERS",
     "user_data.user_identifiers"),
    ({"adIdentifiers": None, "userData": None}, "NO_IDENTIFIERS_PROVIDED", ""),
    ({"currency": "euro"}, "INVALID_CURRENCY_CODE", "currency"),
    ({"conversionValue": "12.5"}, "INVALID_NUMBER_FORMAT", "conversion_value"),
])
def test_one_bad_event_refuses_the_whole_request(
        server: GoogleServer, bearer: dict[str, str], fields: dict[str, Any], reason: str,
        field: str) -> None:
    bad = {k: v for k, v in dm_event("bad", **fields).items() if v is not None}
    response = ingest(server, bearer, dm_event("good"), bad)
    assert (response.status_code, dm_reason(response)) == (400, reason)
    assert violations(response) == [(f"events[1].{field}".rstrip("."), reason)]
    assert server.events() == []


def test_every_bad_event_is_named(server: GoogleServer, bearer: dict[str, str]) -> None:
    raw = _identifiers({"emailAddress": "ann@initech.example"})
    response = ingest(server, bearer, dm_event("a", **raw), dm_event("b"),
                      dm_event("c", eventTimestamp="yesterday"))
    assert violations(response) == [
        ("events[0].user_data.user_identifiers[0].email_address", "INVALID_SHA256_FORMAT"),
        ("events[2].event_timestamp", "INVALID_FORMAT")]


@pytest.mark.parametrize("fields", [
    {"userData": None},
    {"adIdentifiers": None},
    {"adIdentifiers": {"wbraid": "w"}},
    {"eventTimestamp": "2026-01-01T10:00:00.123456789-05:00"},
    _identifiers({"emailAddress": EMAIL_HASH.upper()},
                 {"address": {"givenName": EMAIL_HASH, "familyName": EMAIL_HASH,
                              "regionCode": "US", "postalCode": "94043"}}),
], ids=["clicks-only", "user-data-only", "wbraid", "nanoseconds", "upper-hex-and-address"])
def test_valid_variants_are_accepted(server: GoogleServer, bearer: dict[str, str],
                                     fields: dict[str, Any]) -> None:
    event = {k: v for k, v in dm_event(**fields).items() if v is not None}
    assert ingest(server, bearer, event).status_code == 200


def test_base64_encoding(server: GoogleServer, bearer: dict[str, str]) -> None:
    digest = base64.b64encode(hashlib.sha256(b"ann@initech.example").digest()).decode()
    assert ingest(server, bearer, dm_event(**_identifiers({"emailAddress": digest})),
                  encoding="BASE64").status_code == 200
    hexed = ingest(server, bearer, dm_event("t2"), encoding="BASE64")
    assert dm_reason(hexed) == "INVALID_SHA256_FORMAT"


def test_no_encoding_needed_without_user_data(server: GoogleServer,
                                              bearer: dict[str, str]) -> None:
    event = dm_event()
    del event["userData"]
    assert ingest(server, bearer, event, encoding=None).status_code == 200


@pytest.mark.parametrize(("fault", "status", "reason"), [
    ({"status": 429}, 429, "RESOURCE_EXHAUSTED"),
    ({"reason": "RESOURCE_EXHAUSTED"}, 429, "RESOURCE_EXHAUSTED"),
    ({"status": 403}, 403, "PERMISSION_DENIED"),
    ({"reason": "TERMS_AND_CONDITIONS_NOT_SIGNED"}, 403, "TERMS_AND_CONDITIONS_NOT_SIGNED"),
    ({"status": 500}, 500, "INTERNAL_ERROR"),
    ({"status": 503}, 503, "INTERNAL_ERROR"),
    ({"reason": "DEADLINE_EXCEEDED"}, 504, "DEADLINE_EXCEEDED"),
])
def test_datamanager_faults(server: GoogleServer, bearer: dict[str, str],
                            fault: dict[str, Any], status: int, reason: str) -> None:
    server.fail(**fault, api="datamanager")
    response = ingest(server, bearer, dm_event())
    assert (response.status_code, dm_reason(response)) == (status, reason)


def test_a_datamanager_fault_for_a_transaction_id(server: GoogleServer,
                                                  bearer: dict[str, str]) -> None:
    server.fail(reason="INVALID_ARGUMENT", event_ids=["t2"], message="scripted refusal")
    refused = ingest(server, bearer, dm_event("t1"), dm_event("t2"))
    assert (refused.status_code, status_error(refused)["message"]) == (400, "scripted refusal")
    assert ingest(server, bearer, dm_event("t1")).status_code == 200


def test_a_scripted_401_is_the_front_ends(server: GoogleServer, bearer: dict[str, str]) -> None:
    server.fail(401, request=1, api="datamanager")
    response = ingest(server, bearer, dm_event())
    assert status_error(response)["details"][0]["domain"] == "googleapis.com"


def test_the_datamanager_rate_limit() -> None:
    with GoogleServer(rate_limits={"datamanager": 2}) as server:
        headers = {"Authorization": f"Bearer {server.access_token()}"}
        answers = [ingest(server, headers, dm_event(f"t{i}")) for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert dm_reason(answers[2]) == "RESOURCE_EXHAUSTED"
        assert int(answers[2].headers["Retry-After"]) >= 1
        assert upload(server, headers, conversion()).status_code == 200  # its own limit


# Google Ads


def test_an_upload_answers_results_aligned_with_the_request(
        server: GoogleServer, bearer: dict[str, str]) -> None:
    rows = [conversion("o1"), conversion("o2", gclid=None, gbraid="gb-1"),
            conversion("o3", gclid=None, userIdentifiers=[{"hashedEmail": EMAIL_HASH}])]
    response = upload(server, bearer, *({k: v for k, v in r.items() if v is not None}
                                        for r in rows))
    assert response.status_code == 200
    body = response.json()
    assert "partialFailureError" not in body
    assert body["jobId"]
    assert [r.get("gclid") or r.get("gbraid") for r in body["results"]] == [
        "gclid-1", "gb-1", None]
    assert body["results"][2]["userIdentifiers"] == [{"hashedEmail": EMAIL_HASH}]
    assert all(r["conversionAction"] == ACTION for r in body["results"])
    kept = server.events(api="ads")
    assert [e["order_id"] for e in kept] == ["o1", "o2", "o3"]
    assert kept[1]["click"] == {"type": "gbraid", "id": "gb-1"}


@pytest.mark.parametrize(("extra", "customer", "status", "error"), [
    ({"developer-token": ""}, CUSTOMER, 400, ("requestError",
                                             "DEVELOPER_TOKEN_PARAMETER_MISSING")),
    ({"developer-token": "not-ours"}, CUSTOMER, 401, ("authenticationError",
                                                      "DEVELOPER_TOKEN_INVALID")),
    ({"login-customer-id": "987-654-3210"}, CUSTOMER, 400, ("requestError",
                                                            "INVALID_CUSTOMER_ID")),
    ({}, "123-456-7890", 400, ("requestError", "INVALID_CUSTOMER_ID")),
])
def test_ads_headers_and_customer_id(server: GoogleServer, bearer: dict[str, str],
                                     extra: dict[str, str], customer: str, status: int,
                                     error: tuple[str, str]) -> None:
    response = upload(server, bearer, conversion(), customer=customer, extra=extra)
    assert (response.status_code, ads_request_error(response)) == (status, error)
    assert server.events() == []


def test_without_a_login_customer_id(server: GoogleServer, bearer: dict[str, str]) -> None:
    response = httpx.post(f"{server.url}/v26/customers/{CUSTOMER}:uploadClickConversions",
                          headers={**bearer, "developer-token": DEFAULT_DEVELOPER_TOKEN},
                          json={"conversions": [conversion()], "partialFailure": True})
    assert response.status_code == 200
    assert server.requests()[-1]["login_customer_id"] is None


@pytest.mark.parametrize(("body", "error"), [
    ({"partialFailure": False}, ("partialFailureError", "PARTIAL_FAILURE_MODE_REQUIRED")),
    ({"partialFailure": None}, ("partialFailureError", "PARTIAL_FAILURE_MODE_REQUIRED")),
    ({"conversions": []}, ("requestError", "REQUIRED_FIELD_MISSING")),
])
def test_ads_request_checks(server: GoogleServer, bearer: dict[str, str],
                            body: dict[str, Any], error: tuple[str, str]) -> None:
    payload = {k: v for k, v in {"conversions": [conversion()], "partialFailure": True,
                                 **body}.items() if v is not None}
    response = httpx.post(f"{server.url}/v26/customers/{CUSTOMER}:uploadClickConversions",
                          json=payload, headers={**bearer,
                                                 "developer-token": DEFAULT_DEVELOPER_TOKEN})
    assert (response.status_code, ads_request_error(response)) == (400, error)
    assert status_error(response)["status"] == "INVALID_ARGUMENT"


def test_at_most_2000_conversions(server: GoogleServer, bearer: dict[str, str]) -> None:
    response = upload(server, bearer, *(conversion(f"o{i}") for i in range(2001)))
    assert ads_request_error(response) == ("conversionUploadError",
                                           "TOO_MANY_CONVERSIONS_IN_REQUEST")


@pytest.mark.parametrize(("fields", "category", "name"), [
    ({"conversionAction": "conversionActions/555"}, "requestError", "RESOURCE_NAME_MALFORMED"),
    ({"conversionAction": "customers/999/conversionActions/555"}, "conversionUploadError",
     "NO_CONVERSION_ACTION_FOUND"),
    ({"conversionDateTime": "2026-01-01T10:00:00Z"}, "dateError",
     "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"),
    ({"conversionDateTime": "2026-01-01 10:00:00"}, "dateError",
     "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"),
    ({"conversionDateTime": "2026-02-30 10:00:00+00:00"}, "dateError",
     "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"),
    ({"gclid": None, "gbraid": "g", "wbraid": "w"}, "conversionUploadError",
     "GBRAID_WBRAID_BOTH_SET"),
    ({"gbraid": "g"}, "fieldError", "VALUE_MUST_BE_UNSET"),
    ({"gclid": None}, "fieldError", "REQUIRED"),
    ({"userIdentifiers": [{"hashedEmail": EMAIL_HASH}] * 6}, "collectionSizeError",
     "TOO_MANY"),
    ({"userIdentifiers": [{"hashedEmail": "ann@initech.example"}]}, "conversionUploadError",
     "INVALID_USER_IDENTIFIER"),
    ({"userIdentifiers": [{"hashedPhoneNumber": "+16505551212"}]}, "conversionUploadError",
     "INVALID_USER_IDENTIFIER"),
    ({"userIdentifiers": [{"addressInfo": {"city": "x"}}]}, "conversionUploadError",
     "UNSUPPORTED_USER_IDENTIFIER"),
])
def test_a_bad_row_fails_alone(server: GoogleServer, bearer: dict[str, str],
                               fields: dict[str, Any], category: str, name: str) -> None:
    bad = {k: v for k, v in conversion("bad", **fields).items() if v is not None}
    response = upload(server, bearer, conversion("o1"), bad, conversion("o3"))
    assert response.status_code == 200
    body = response.json()
    assert ads_errors(body) == [(1, category, name)]
    assert body["results"][1] == {}
    assert body["results"][0]["gclid"] == body["results"][2]["gclid"] == "gclid-1"
    assert "at conversions[1]" in body["partialFailureError"]["message"]
    assert [e["order_id"] for e in server.events()] == ["o1", "o3"]


def test_the_click_registry(server: GoogleServer, bearer: dict[str, str]) -> None:
    now = time.time()
    server.register_click("old", now - 100 * DAY)
    server.register_click("fresh", now - 3600)
    server.register_click("clicked", now - 2 * DAY)
    server.configure(clicks=[{"click_id": "late", "click_time": rfc3339(DAY)}])
    response = upload(
        server, bearer,
        conversion("a", gclid="old"),
        conversion("b", gclid="fresh", conversionDateTime=ads_time(0)),
        conversion("c", gclid="late", conversionDateTime=ads_time(2 * DAY)),
        conversion("d", gclid="clicked"),
        conversion("e", gclid="never-registered"))
    assert ads_errors(response.json()) == [
        (0, "conversionUploadError", "EXPIRED_EVENT"),
        (1, "conversionUploadError", "TOO_RECENT_EVENT"),
        (2, "conversionUploadError", "CONVERSION_PRECEDES_EVENT")]
    assert [e["order_id"] for e in server.events()] == ["d", "e"]
    server.advance_clock(6 * 3600)  # six hours later the fresh click may be used
    later = upload(server, bearer, conversion("b", gclid="fresh",
                                              conversionDateTime=ads_time(-6 * 3600)))
    assert "partialFailureError" not in later.json()


def test_strict_clicks_refuse_unregistered_ones(server: GoogleServer,
                                                bearer: dict[str, str]) -> None:
    server.configure(strict_clicks=True)
    server.register_click("known", time.time() - DAY)
    response = upload(server, bearer, conversion("a", gclid="known"),
                      conversion("b", gclid="unknown"))
    assert ads_errors(response.json()) == [(1, "conversionUploadError", "CLICK_NOT_FOUND")]
    assert server.config()["strict_clicks"] is True


def test_ads_duplicates(server: GoogleServer, bearer: dict[str, str]) -> None:
    first = upload(server, bearer, conversion("o1"), conversion("o1", gclid="other"))
    assert ads_errors(first.json()) == [(1, "conversionUploadError", "DUPLICATE_ORDER_ID")]
    again = upload(server, bearer, conversion("o1", gclid="third"))
    assert ads_errors(again.json()) == [(0, "conversionUploadError", "ORDER_ID_ALREADY_IN_USE")]
    at = ads_time(7200)
    no_order = {k: v for k, v in conversion(gclid="g9", conversionDateTime=at).items()
                if k != "orderId"}
    same_click = upload(server, bearer, no_order, no_order)
    assert ads_errors(same_click.json()) == [
        (1, "conversionUploadError", "DUPLICATE_CLICK_CONVERSION_IN_REQUEST")]
    repeat = upload(server, bearer, no_order)
    assert ads_errors(repeat.json()) == [
        (0, "conversionUploadError", "CLICK_CONVERSION_ALREADY_EXISTS")]
    assert len(server.events()) == 2


def test_ads_validate_only_stores_nothing(server: GoogleServer, bearer: dict[str, str]) -> None:
    response = upload(server, bearer, conversion("o1"), conversion("o1"), validateOnly=True)
    body = response.json()
    assert "results" not in body
    assert ads_errors(body) == [(1, "conversionUploadError", "DUPLICATE_ORDER_ID")]
    assert server.events() == []
    assert "partialFailureError" not in upload(server, bearer, conversion("o1")).json()


def test_a_row_fault_for_an_order_id(server: GoogleServer, bearer: dict[str, str]) -> None:
    server.fail(reason="INTERNAL_ERROR", event_ids=["o2"], times=1)
    response = upload(server, bearer, conversion("o1"), conversion("o2"))
    assert ads_errors(response.json()) == [(1, "internalError", "INTERNAL_ERROR")]
    retried = upload(server, bearer, conversion("o2"))
    assert "partialFailureError" not in retried.json()


def test_a_row_fault_with_a_status_fails_the_request(server: GoogleServer,
                                                     bearer: dict[str, str]) -> None:
    server.fail(503, reason="TRANSIENT_ERROR", event_ids=["o2"])
    response = upload(server, bearer, conversion("o1"), conversion("o2"))
    assert (response.status_code, ads_request_error(response)) == (
        503, ("internalError", "TRANSIENT_ERROR"))
    assert server.events() == []


@pytest.mark.parametrize(("fault", "status", "error"), [
    ({"status": 403}, 403, ("authorizationError", "USER_PERMISSION_DENIED")),
    ({"reason": "PERMISSION_DENIED"}, 403, ("authorizationError", "USER_PERMISSION_DENIED")),
    ({"reason": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"}, 403,
     ("notAllowlistedError", "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE")),
    ({"status": 429}, 429, ("quotaError", "RESOURCE_EXHAUSTED")),
    ({"status": 500}, 500, ("internalError", "INTERNAL_ERROR")),
    ({"reason": "OAUTH_TOKEN_EXPIRED"}, 401, ("authenticationError", "OAUTH_TOKEN_EXPIRED")),
])
def test_ads_request_faults(server: GoogleServer, bearer: dict[str, str],
                            fault: dict[str, Any], status: int, error: tuple[str, str]) -> None:
    server.fail(**fault, api="ads", seconds=30)
    response = upload(server, bearer, conversion())
    assert (response.status_code, ads_request_error(response)) == (status, error)
    assert status_error(response)["status"] == {
        401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL"}[status]


def test_a_scripted_401_on_ads_is_the_front_ends(server: GoogleServer,
                                                 bearer: dict[str, str]) -> None:
    server.fail(401, api="ads", request=1)
    response = upload(server, bearer, conversion())
    assert status_error(response)["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert upload(server, bearer, conversion()).status_code == 200


def test_token_endpoint_faults(server: GoogleServer) -> None:
    server.fail(503, api="token", times=1)
    failed = httpx.post(server.token_url, data=GRANT)
    assert (failed.status_code, failed.json()["error"]) == (503, "server_error")
    assert httpx.post(server.token_url, data=GRANT).status_code == 200


def test_an_unknown_route_or_version(server: GoogleServer, bearer: dict[str, str]) -> None:
    for path in ("/v1/audiences:ingest", f"/latest/customers/{CUSTOMER}:uploadClickConversions"):
        response = httpx.post(server.url + path, headers=bearer, json={})
        assert (response.status_code, status_error(response)["status"]) == (404, "NOT_FOUND")


# Control API and running it


def test_the_events_over_the_control_api(server: GoogleServer, bearer: dict[str, str]) -> None:
    ingest(server, bearer, dm_event())
    upload(server, bearer, conversion())
    both = httpx.get(server.url + "/_events").json()
    assert [e["api"] for e in both] == ["datamanager", "ads"]
    only = httpx.get(server.url + "/_events", params={"api": "ads"}).json()
    assert [e["order_id"] for e in only] == ["o1"]


def test_bad_knobs_are_refused(server: GoogleServer) -> None:
    for knobs in ({"strict_clicks": "yes"}, {"clicks": [{"click_id": "x"}]},
                  {"clicks": ["x"]}, {"token_lifetime_seconds": 0}, {"client_secret": ""}):
        response = httpx.post(server.url + "/_script", json=knobs)
        assert response.status_code == 400, knobs
    assert server.config()["clicks"] == {}
    with pytest.raises(ValueError, match="credentials"):
        GoogleServer(client_secret="")


def test_reset_forgets_clicks_tokens_and_events(server: GoogleServer,
                                                bearer: dict[str, str]) -> None:
    server.register_click("g", time.time() - DAY)
    server.configure(strict_clicks=True)
    upload(server, bearer, conversion(gclid="g"))
    server.reset()
    config = server.config()
    assert (config["clicks"], config["strict_clicks"], config["tokens_issued"]) == ({}, False, 0)
    assert server.events() == []
    assert ingest(server, bearer, dm_event()).status_code == 401


def test_the_command_line_help() -> None:
    text = help_text("processor.devkit.google_server")
    for option in ("--client-secret", "--developer-token", "--token-lifetime",
                   "--strict-clicks", "--rate-limit", "--fault"):
        assert option in text


def test_the_command_line_prints_its_url_and_stops_on_sigterm() -> None:
    with serving("processor.devkit.google_server", "--client-secret", "cli-secret",
                 "--rate-limit", "datamanager=1") as served:
        token = httpx.post(served.url + "/token", data={**GRANT, "client_secret": "cli-secret"})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body = {"destinations": [destination()], "encoding": "HEX", "events": [dm_event()]}
        statuses = [httpx.post(served.url + "/v1/events:ingest", json=body,
                               headers=headers).status_code for _ in range(2)]
        assert statuses == [200, 429]
        assert "cli-secret" not in httpx.get(served.url + "/_log").text
