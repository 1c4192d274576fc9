"""The Clearbit-compatible server, over real HTTP on a free loopback port.

The integration, chaos and benchmark runs trust this server to behave like
Clearbit and to do exactly what its knobs say; these tests hold it to that.
One server serves the module and is reset before every test; tests that need
start-up options get a server of their own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processor.devkit.clearbit_records import (
    FIXTURE_COMPANIES,
    combined_body,
    company_record,
    person_record,
)
from processor.devkit.clearbit_server import LOOKUP_PATH, ClearbitServer, Rule

KEY = "sk_test_local"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ClearbitServer]:
    with ClearbitServer() as server:
        yield server


@pytest.fixture
def server(shared_server: ClearbitServer) -> ClearbitServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def client(server: ClearbitServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(KEY, ""), timeout=10) as http:
        yield http


def find(http: httpx.Client, email: str, **params: str) -> httpx.Response:
    return http.get(LOOKUP_PATH, params={"email": email, **params})


def error_type(response: httpx.Response) -> str:
    return str(response.json()["error"]["type"])


def gather(url: str, emails: list[str]) -> list[httpx.Response]:
    """Send the lookups all at once, each on its own connection."""
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(emails))
        async with httpx.AsyncClient(base_url=url, auth=(KEY, ""), timeout=10,
                                     limits=limits) as http:
            return await asyncio.gather(
                *(http.get(LOOKUP_PATH, params={"email": e}) for e in emails))
    return asyncio.run(run())


# Authentication


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"},
    {"Authorization": "Basic c2tfdGVzdF9sb2NhbDo="},  # base64("sk_test_local:")
    {"Authorization": "basic c2tfdGVzdF9sb2NhbDppZ25vcmVk"},  # a password is ignored
    {"X-API-KEY": KEY},
], ids=["bearer", "basic", "basic-with-password", "x-api-key"])
def test_the_secret_key_is_accepted_in_every_scheme(server: ClearbitServer,
                                                     headers: dict[str, str]) -> None:
    response = httpx.get(server.url + LOOKUP_PATH, params={"email": "ann@initech.example"},
                         headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(("headers", "kind", "words"), [
    ({}, "auth_required", "API key is required"),
    ({"Authorization": "Bearer sk_wrong"}, "unauthorized", "Invalid API key"),
    ({"Authorization": "Basic c2tfd3Jvbmc6"}, "unauthorized", "Invalid API key"),
    ({"Authorization": "Basic !!notbase64"}, "unauthorized", "Invalid API key"),
    ({"Authorization": "Bearer pk_live_0123"}, "unauthorized", "publishable key"),
    ({"Authorization": "Basic Og=="}, "auth_required", "API key is required"),  # ":"
], ids=["missing", "wrong-bearer", "wrong-basic", "garbage-basic", "publishable", "empty"])
def test_a_missing_or_wrong_key_gets_401(server: ClearbitServer, headers: dict[str, str],
                                          kind: str, words: str) -> None:
    response = httpx.get(server.url + LOOKUP_PATH, params={"email": "ann@initech.example"},
                         headers=headers)
    assert response.status_code == 401
    assert error_type(response) == kind
    assert words in response.json()["error"]["message"]


def test_the_accepted_key_is_configurable() -> None:
    with ClearbitServer(key="sk_other") as server:
        ok = httpx.get(server.url + LOOKUP_PATH, params={"email": "a@b.example"},
                       auth=("sk_other", ""))
        default = httpx.get(server.url + LOOKUP_PATH, params={"email": "a@b.example"},
                            auth=(KEY, ""))
    assert (ok.status_code, default.status_code) == (200, 401)


# Default answers, chosen by the email's local part


def test_a_found_email_has_person_and_company(client: httpx.Client) -> None:
    response = find(client, "ann.example@initech.example")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["person"]["email"] == "ann.example@initech.example"
    assert body["person"]["employment"]["domain"] == "initech.example"
    assert body["company"]["name"] == "Initech"
    assert body["company"]["legalName"] == "Initech Software Services, Inc."


@pytest.mark.parametrize(("email", "status", "kind"), [
    ("notfound.someone@initech.example", 404, "unknown_record"),
    ("invalid.x@initech.example", 422, "params_invalid"),
    ("info@initech.example", 422, "params_invalid"),
    ("noreply@initech.example", 422, "params_invalid"),
    ("barbara@@liskov", 422, "params_invalid"),
    ("no-tld@localhost", 422, "params_invalid"),
    ("error.boom@initech.example", 500, "api_error"),
])
def test_error_prefixes(client: httpx.Client, email: str, status: int, kind: str) -> None:
    response = find(client, email)
    assert (response.status_code, error_type(response)) == (status, kind)


def test_a_missing_email_gets_422(client: httpx.Client) -> None:
    response = client.get(LOOKUP_PATH)
    assert response.status_code == 422
    assert error_type(response) == "params_invalid"
    assert "email" in response.json()["error"]["message"]


def test_nobody_is_found_with_neither_person_nor_company(client: httpx.Client) -> None:
    response = find(client, "nobody.here@initech.example")
    assert (response.status_code, response.json()) == (200, {"person": None, "company": None})


def test_nocompany_is_a_person_only(client: httpx.Client) -> None:
    body = find(client, "nocompany.kim@initech.example").json()
    assert body["person"]["email"] == "nocompany.kim@initech.example"
    assert body["company"] is None


@pytest.mark.parametrize("domain", ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"])
def test_free_mail_has_no_company(client: httpx.Client, domain: str) -> None:
    body = find(client, f"someone.new@{domain}").json()
    assert body["company"] is None
    assert body["person"]["emailProvider"] is True
    assert body["person"]["employment"]["domain"] is None


def test_queued_answers_202_twice_then_the_record(client: httpx.Client) -> None:
    statuses = [find(client, "queued.q@initech.example") for _ in range(3)]
    assert [r.status_code for r in statuses] == [202, 202, 200]
    assert statuses[0].content == b""
    assert statuses[2].json()["person"]["email"] == "queued.q@initech.example"
    assert find(client, "queued.other@initech.example").status_code == 202  # counted per email


def test_slow_takes_two_seconds_without_holding_up_others(server: ClearbitServer) -> None:
    started = time.monotonic()

    async def run() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=server.url, auth=(KEY, ""), timeout=10) as http:
            async def timed(email: str) -> float:
                response = await http.get(LOOKUP_PATH, params={"email": email})
                assert response.status_code == 200
                return time.monotonic() - started
            slow, quick = await asyncio.gather(timed("slow.sam@initech.example"),
                                               timed("quick@initech.example"))
            return slow, quick
    slow, quick = asyncio.run(run())
    assert slow >= 2.0
    assert quick < 1.0


def test_an_unknown_route_is_404_unknown_route(client: httpx.Client) -> None:
    response = client.get("/v2/people/lookup", params={"email": "a@b.example"})
    assert (response.status_code, error_type(response)) == (404, "unknown_route")


# Per-email rules


def test_a_rule_with_times_applies_then_falls_back(server: ClearbitServer,
                                                   client: httpx.Client) -> None:
    server.set_rule("Ann@Initech.example", 503, times=2)
    statuses = [find(client, "ann@initech.example").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert server.rules() == {}


@pytest.mark.parametrize(("status", "kind"), [
    (401, "unauthorized"), (402, "payment_required"), (404, "unknown_record"),
    (422, "params_invalid"), (429, "rate_limit"), (500, "api_error"), (503, "api_error"),
])
def test_a_rule_status_gets_clearbits_body(server: ClearbitServer, client: httpx.Client,
                                           status: int, kind: str) -> None:
    server.set_rule("ann@initech.example", status)
    response = find(client, "ann@initech.example")
    assert (response.status_code, error_type(response)) == (status, kind)
    assert find(client, "ann@initech.example").status_code == status  # no times: stays


def test_a_rule_can_find_a_notfound_address_and_queue_a_found_one(
        server: ClearbitServer, client: httpx.Client) -> None:
    server.set_rule("notfound.x@initech.example", 200)
    server.set_rule("ann@initech.example", 202, times=1)
    assert find(client, "notfound.x@initech.example").json()["company"]["name"] == "Initech"
    queued = find(client, "ann@initech.example")
    assert (queued.status_code, queued.content) == (202, b"")


def test_a_rule_body_headers_and_delay(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_rule("ann@initech.example", 502, body="<html>bad gateway</html>",
                    content_type="text/html", headers={"Retry-After": "7"}, delay_ms=300)
    server.set_rule("bob@initech.example", 200, body={"person": None, "company": {"x": 1}})
    started = time.monotonic()
    html = find(client, "ann@initech.example")
    assert time.monotonic() - started >= 0.3
    assert (html.status_code, html.text, html.headers["retry-after"]) == (
        502, "<html>bad gateway</html>", "7")
    assert html.headers["content-type"] == "text/html"
    assert find(client, "bob@initech.example").json() == {"person": None, "company": {"x": 1}}


def test_a_rule_without_status_only_delays(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_rule("notfound.d@initech.example", delay_ms=300)
    started = time.monotonic()
    assert find(client, "notfound.d@initech.example").status_code == 404
    assert time.monotonic() - started >= 0.3


def test_rules_over_the_control_api(server: ClearbitServer, client: httpx.Client) -> None:
    added = client.post("/_control/rules", json={"rules": [
        {"email": "ann@initech.example", "status": 404, "times": 1},
        {"email": "bob@initech.example", "status": 500}]})
    assert added.status_code == 200
    assert set(added.json()["rules"]) == {"ann@initech.example", "bob@initech.example"}
    assert find(client, "ann@initech.example").status_code == 404
    assert find(client, "ann@initech.example").status_code == 200
    client.delete("/_control/rules", params={"email": "bob@initech.example"})
    assert find(client, "bob@initech.example").status_code == 200
    client.post("/_control/rules", json={"email": "bob@initech.example", "status": 500})
    assert client.delete("/_control/rules").json()["rules"] == {}
    assert client.get("/_control/rules").json() == {}


@pytest.mark.parametrize("body", [
    {"status": 404}, {"email": "a@b.example", "status": 99}, {"email": "a@b.example", "times": 0},
    {"email": "a@b.example", "delay_ms": -1}, {"email": "a@b.example", "headers": {"x": 1}},
    {"rules": {"email": "a@b.example"}},
])
def test_a_bad_rule_is_refused_with_400(client: httpx.Client, body: dict[str, object]) -> None:
    response = client.post("/_control/rules", json=body)
    assert (response.status_code, error_type(response)) == (400, "params_invalid")


def test_a_body_that_is_not_json_is_refused(client: httpx.Client) -> None:
    assert client.post("/_control/latency", content=b"{nope").status_code == 400
    assert client.post("/_control/latency", json=[1]).status_code == 400


def test_start_up_rules() -> None:
    rules = {"ann@initech.example": Rule(status=404, times=1)}
    with ClearbitServer(rules=rules) as server, httpx.Client(base_url=server.url,
                                                             auth=(KEY, "")) as http:
        assert [find(http, "ann@initech.example").status_code for _ in range(2)] == [404, 200]
        server.reset()  # back to the start configuration, rule included
        assert find(http, "ann@initech.example").status_code == 404


# Latency


def test_latency_is_added_to_every_lookup_without_blocking(server: ClearbitServer) -> None:
    server.set_latency(500)
    started = time.monotonic()
    responses = gather(server.url, [f"user{i}@initech.example" for i in range(20)])
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in responses)
    assert 0.5 <= elapsed < 2.5  # twenty 500 ms lookups at once, not one after another (10 s)
    assert server.stats()["peak_concurrency"] == 20


def test_latency_over_the_control_api(server: ClearbitServer, client: httpx.Client) -> None:
    assert client.post("/_control/latency", json={"latency_ms": 200}).json()["latency_ms"] == 200
    started = time.monotonic()
    find(client, "ann@initech.example")
    assert time.monotonic() - started >= 0.2


# Rate limits


def test_no_rate_limit_headers_without_a_limit(client: httpx.Client) -> None:
    assert "x-ratelimit-limit" not in find(client, "ann@initech.example").headers


def test_the_rate_limit_counts_down_then_answers_429(server: ClearbitServer,
                                                     client: httpx.Client) -> None:
    server.set_rate_limit(3)
    responses = [find(client, f"u{i}@initech.example") for i in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    assert {r.headers["x-ratelimit-limit"] for r in responses} == {"3"}
    reset = int(responses[3].headers["x-ratelimit-reset"])
    assert time.time() + 55 <= reset <= time.time() + 61  # when the first request leaves
    assert error_type(responses[3]) == "rate_limit"
    assert "retry-after" not in responses[3].headers
    assert server.stats()["max_requests_in_any_60s_window"] == 5  # refused ones too
    assert [e["cause"] for e in server.requests()][-2:] == ["rate_limit", "rate_limit"]


def test_the_rate_limit_sends_retry_after_when_asked(server: ClearbitServer,
                                                     client: httpx.Client) -> None:
    response = client.post("/_control/rate-limit", json={"per_minute": 1, "retry_after": True})
    assert response.json()["rate_limit_per_minute"] == 1
    assert find(client, "a@initech.example").status_code == 200
    limited = find(client, "b@initech.example")
    assert limited.status_code == 429
    assert 55 <= int(limited.headers["retry-after"]) <= 60


def test_the_rate_limit_checks_the_key_first(server: ClearbitServer) -> None:
    server.set_rate_limit(1)
    for _ in range(3):
        response = httpx.get(server.url + LOOKUP_PATH, params={"email": "a@initech.example"})
        assert response.status_code == 401
        assert response.headers["x-ratelimit-remaining"] == "1"  # refused keys use no room


@pytest.mark.parametrize("retry_after", [False, True])
def test_a_forced_429_window(server: ClearbitServer, client: httpx.Client,
                             retry_after: bool) -> None:
    server.force_429(0.6, retry_after=retry_after)
    limited = find(client, "ann@initech.example")
    assert (limited.status_code, error_type(limited)) == (429, "rate_limit")
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert time.time() <= int(limited.headers["x-ratelimit-reset"]) <= time.time() + 2
    assert ("retry-after" in limited.headers) is retry_after
    if retry_after:
        assert limited.headers["retry-after"] == "1"
    time.sleep(0.7)
    assert find(client, "ann@initech.example").status_code == 200


def test_a_forced_429_window_ends_on_request(client: httpx.Client) -> None:
    client.post("/_control/force-429", json={"seconds": 60, "retry_after": True})
    assert find(client, "ann@initech.example").status_code == 429
    client.post("/_control/force-429", json={"seconds": 0})
    assert find(client, "ann@initech.example").status_code == 200


# Quota and outages


def test_the_quota_switch(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_quota_exhausted(True)
    response = find(client, "ann@initech.example")
    assert (response.status_code, error_type(response)) == (402, "payment_required")
    client.post("/_control/quota", json={"exhausted": False})
    assert find(client, "ann@initech.example").status_code == 200


def test_an_outage_with_a_status_and_back(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_outage("status", status=502)
    response = find(client, "ann@initech.example")
    assert (response.status_code, error_type(response)) == (502, "api_error")
    server.set_outage("off")
    assert find(client, "ann@initech.example").status_code == 200


def test_an_outage_that_drops_connections(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_outage("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        find(client, "ann@initech.example")
    server.set_outage("off")
    assert find(client, "ann@initech.example").status_code == 200
    assert [e["status"] for e in server.requests()] == [0, 200]


def test_an_outage_that_refuses_connections(server: ClearbitServer) -> None:
    with httpx.Client(base_url=server.url, auth=(KEY, "")) as kept:
        assert find(kept, "ann@initech.example").status_code == 200
        server.set_outage("refuse")
        with pytest.raises(httpx.RemoteProtocolError):  # a kept-alive connection is dropped
            find(kept, "ann@initech.example")
        with httpx.Client(base_url=server.url, auth=(KEY, "")) as fresh, \
                pytest.raises(httpx.ConnectError):
            find(fresh, "ann@initech.example")
        server.set_outage("off")
        assert find(kept, "ann@initech.example").status_code == 200


def test_an_outage_over_the_control_api_ends_by_itself(server: ClearbitServer,
                                                       client: httpx.Client) -> None:
    refused = client.post("/_control/outage", json={"mode": "refuse"})
    assert refused.status_code == 400  # it could never be switched off over HTTP
    assert "seconds" in refused.json()["error"]["message"]
    client.post("/_control/outage", json={"mode": "refuse", "seconds": 0.5})
    with httpx.Client(base_url=server.url, auth=(KEY, "")) as fresh:
        with pytest.raises(httpx.ConnectError):
            find(fresh, "ann@initech.example")
        time.sleep(0.7)
        assert find(fresh, "ann@initech.example").status_code == 200
    client.post("/_control/outage", json={"mode": "status", "status": 503, "seconds": 0.3})
    assert find(client, "ann@initech.example").status_code == 503
    time.sleep(0.5)
    assert find(client, "ann@initech.example").status_code == 200


def test_an_outage_at_start_up() -> None:
    with ClearbitServer(outage="status", outage_status=500) as server:
        response = httpx.get(server.url + LOOKUP_PATH, params={"email": "a@initech.example"},
                             auth=(KEY, ""))
    assert response.status_code == 500


# Request log and stats


def test_the_request_log(server: ClearbitServer, client: httpx.Client) -> None:
    find(client, "ann@initech.example", webhook_id="w-1",
         suppression="eu")
    httpx.get(server.url + LOOKUP_PATH, params={"email": "ann@initech.example"},
              headers={"API-Version": "2019-12-19", "User-Agent": "stage/1.0",
                       "Authorization": f"Bearer {KEY}"})
    httpx.get(server.url + LOOKUP_PATH, params={"email": "notfound@initech.example"})
    first, second, third = server.requests()
    assert first["path"] == LOOKUP_PATH
    assert first["email"] == "ann@initech.example"
    assert (first["status"], first["auth_scheme"]) == (200, "basic")
    assert first["params"] == {"webhook_id": "w-1", "suppression": "eu"}
    assert second["auth_scheme"] == "bearer"
    assert second["headers"]["API-Version"] == "2019-12-19"
    assert second["headers"]["User-Agent"] == "stage/1.0"
    assert (third["status"], third["auth_scheme"], third["cause"]) == (401, "none", "auth")
    assert abs(first["time"] - time.time()) < 5
    assert [e["seq"] for e in server.requests()] == [1, 2, 3]
    assert server.requests(email="notfound@initech.example") == [third]
    assert client.get("/_control/requests", params={"limit": 1}).json() == [third]


def test_the_stats(server: ClearbitServer, client: httpx.Client) -> None:
    for email in ["a@initech.example", "a@initech.example", "notfound@initech.example"]:
        find(client, email)
    stats = client.get("/_control/stats").json()
    assert stats == server.stats()
    assert stats["total"] == 3
    assert stats["by_status"] == {"200": 2, "404": 1}
    assert stats["by_email_count"] == {"a@initech.example": 2, "notfound@initech.example": 1}
    assert stats["max_requests_in_any_60s_window"] == 3
    assert stats["peak_concurrency"] == 1
    assert stats["in_flight"] == 0


def test_the_log_is_bounded_but_the_counts_are_not() -> None:
    with ClearbitServer(log_size=5) as server, httpx.Client(base_url=server.url,
                                                            auth=(KEY, "")) as http:
        for i in range(8):
            find(http, f"user{i}@initech.example")
        entries = server.requests()
        stats = server.stats()
    assert [e["seq"] for e in entries] == [4, 5, 6, 7, 8]
    assert stats["total"] == 8
    assert len(stats["by_email_count"]) == 8


def test_the_key_never_reaches_the_log(server: ClearbitServer, client: httpx.Client) -> None:
    find(client, "a@initech.example")
    httpx.get(server.url + LOOKUP_PATH, params={"email": "b@initech.example", "api_key": KEY},
              headers={"Authorization": f"Bearer {KEY}"})
    httpx.get(server.url + LOOKUP_PATH, params={"email": "c@initech.example", "token": KEY},
              headers={"X-API-KEY": KEY})
    httpx.get(server.url + LOOKUP_PATH, params={"email": "d@initech.example"},
              headers={"Authorization": "Bearer sk_live_someone_elses"})
    text = json.dumps([client.get(f"/_control/{p}").json()
                       for p in ("requests", "stats", "config", "rules")])
    assert KEY not in text
    assert "sk_live_someone_elses" not in text
    assert [e["auth_scheme"] for e in server.requests()] == ["basic", "bearer", "x-api-key",
                                                            "bearer"]
    assert server.requests()[1]["params"] == {"api_key": "[redacted]"}


def test_reset_clears_rules_modes_and_log(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_rule("ann@initech.example", 404)
    server.set_latency(100)
    server.set_rate_limit(1)
    server.set_quota_exhausted(True)
    server.force_429(60)
    find(client, "queued@initech.example")
    assert client.post("/_control/reset").status_code == 200
    assert server.requests() == []
    assert server.stats()["total"] == 0
    config = server.config()
    assert config["rules"] == {}
    assert (config["latency_ms"], config["rate_limit_per_minute"]) == (0, 0)
    assert (config["quota_exhausted"], config["forced_429_seconds_left"]) == (False, 0)
    assert find(client, "ann@initech.example").status_code == 200
    assert find(client, "queued@initech.example").status_code == 202  # counter cleared too


def test_the_control_api_health_and_config(client: httpx.Client) -> None:
    assert client.get("/_control/health").json() == {"ok": True}
    config = client.get("/_control/config").json()
    assert config["outage"] == "off"
    assert config["log_size"] == 100_000


# Records


def test_records_are_deterministic_and_distinct(server: ClearbitServer,
                                                client: httpx.Client) -> None:
    first = find(client, "Ann.Example@Initech.example").content
    again = find(client, "ann.example@initech.example ").content
    assert first == again == combined_body("ann.example@initech.example")
    assert decode(first)["person"] == person_record("ann.example@initech.example")
    other = find(client, "ann.other@initech.example").json()
    assert other["person"]["id"] != decode(first)["person"]["id"]
    assert other["company"] == decode(first)["company"]


def decode(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    assert isinstance(value, dict)
    return value


def test_a_person_has_clearbits_fields() -> None:
    person = person_record("kim.nakamura@blue-harbor.io")
    assert person["name"] == {"fullName": "Kim Nakamura", "givenName": "Kim",
                              "familyName": "Nakamura"}
    assert set(person["geo"]) == {"city", "state", "stateCode", "country", "countryCode",
                                  "lat", "lng"}
    assert isinstance(person["utcOffset"], int)
    assert set(person["employment"]) == {"domain", "name", "title", "role", "subRole",
                                         "seniority"}
    assert person["employment"]["name"] == "Blue Harbor"
    for key in ("github", "twitter", "linkedin", "facebook", "gravatar"):
        assert "handle" in person[key]
    assert person["gravatar"]["avatars"][0]["type"] == "thumbnail"
    assert (person["fuzzy"], person["emailProvider"]) == (False, False)
    assert person["phone"] is None
    assert person["indexedAt"].endswith("Z")


def test_a_person_without_letters_gets_an_invented_name() -> None:
    name = person_record("1234@blue-harbor.io")["name"]
    assert name["fullName"] == f"{name['givenName']} {name['familyName']}"
    assert name["givenName"].isalpha()


def test_a_company_has_clearbits_fields() -> None:
    company = company_record("blue-harbor.io")
    assert company is not None
    assert (company["name"], company["domain"]) == ("Blue Harbor", "blue-harbor.io")
    assert set(company["category"]) >= {"sector", "industryGroup", "industry", "subIndustry",
                                        "sicCode", "naicsCode"}
    assert set(company["metrics"]) >= {"employees", "employeesRange", "estimatedAnnualRevenue"}
    assert company["metrics"]["employeesRange"] in {
        "1-10", "11-50", "51-250", "251-1K", "1K-5K", "5K-10K", "10K-50K", "50K-100K", "100K+"}
    assert company["site"]["phoneNumbers"]
    assert isinstance(company["domainAliases"], list)
    assert company["tech"]
    assert "domain" in company["parent"]
    assert company["geo"]["subPremise"] is None
    assert company_record("gmail.com") is None


def test_every_fixture_company_is_served(client: httpx.Client) -> None:
    for domain, fixture in FIXTURE_COMPANIES.items():
        company = find(client, f"pat@{domain}").json()["company"]
        assert (company["name"], company["foundedYear"]) == (fixture["name"],
                                                             fixture["foundedYear"])
    vandelay = company_record("vandelay.example")
    assert vandelay is not None
    assert vandelay["parent"]["domain"] == "globex.example"


# Running it


def test_start_on_a_busy_port_raises() -> None:
    with ClearbitServer() as first:
        second = ClearbitServer(port=int(first.url.rsplit(":", 1)[1]))
        with pytest.raises(OSError, match="in use"):
            second.start()
        second.stop()  # nothing to stop: a no-op


def test_methods_need_a_running_server() -> None:
    with pytest.raises(RuntimeError, match="start"):
        ClearbitServer().stats()


def test_bad_settings_are_refused(server: ClearbitServer) -> None:
    with pytest.raises(ValueError, match="outage"):
        ClearbitServer(outage_status=200)
    with pytest.raises(ValueError, match="latency"):
        server.set_latency(-1)  # raised on the server's loop, re-raised here
    with pytest.raises(ValueError, match="status"):
        server.set_rule("a@b.example", 99)


def test_stop_drops_a_lookup_still_in_flight() -> None:
    server = ClearbitServer(latency_ms=30_000)
    url = server.start()

    async def lookup_then_stop() -> BaseException | None:
        async with httpx.AsyncClient(base_url=url, auth=(KEY, ""), timeout=10) as http:
            pending = asyncio.ensure_future(http.get(LOOKUP_PATH, params={"email": "a@b.example"}))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.stop)
            try:
                await pending
            except httpx.TransportError as error:
                return error
            return None
    started = time.monotonic()
    error = asyncio.run(lookup_then_stop())
    assert isinstance(error, httpx.RemoteProtocolError)
    assert time.monotonic() - started < 3


def test_the_command_line_prints_its_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "processor.devkit.clearbit_server", "--port", "0",
         "--key", "sk_cli", "--rate-limit-per-minute", "100",
         "--rule", '{"email": "ann@initech.example", "status": 404}'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, auth=("sk_cli", "")) as http:
            found = find(http, "bob@initech.example")
            assert found.headers["x-ratelimit-limit"] == "100"
            # Another process (another hash seed) serves the very same record.
            assert found.content == combined_body("bob@initech.example")
            assert find(http, "ann@initech.example").status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


# --- hostile answers ----------------------------------------------------------------


def test_size_pads_the_record_to_exactly_that_many_bytes(server: ClearbitServer,
                                                          client: httpx.Client) -> None:
    server.set_rule("big@initech.example", 200, size=1_500_000)
    response = find(client, "big@initech.example")
    assert response.status_code == 200
    assert len(response.content) == 1_500_000
    body = response.json()
    assert set(body["person"]["padding"]) == {"x"}
    assert body["person"]["name"]["fullName"]  # the record is still there


def test_gzip_is_real_and_bad_gzip_only_claims_it(server: ClearbitServer,
                                                  client: httpx.Client) -> None:
    server.set_rule("zipped@initech.example", 200, encoding="gzip", size=1_000_000)
    server.set_rule("broken@initech.example", 200, encoding="bad-gzip")
    zipped = find(client, "zipped@initech.example")
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < 20_000  # a small download
    assert len(zipped.content) == 1_000_000  # a large answer
    with pytest.raises(httpx.DecodingError):
        find(client, "broken@initech.example")


def test_chunked_answers_have_no_content_length(server: ClearbitServer,
                                                client: httpx.Client) -> None:
    server.set_rule("streamed@initech.example", 200, chunked=True, size=300_000)
    response = find(client, "streamed@initech.example")
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert len(response.content) == 300_000


def test_drip_sends_a_byte_at_a_time(server: ClearbitServer, client: httpx.Client) -> None:
    server.set_rule("drip@initech.example", 200, body={"person": None, "company": None},
                    drip_ms=50)
    started = time.monotonic()
    with client.stream("GET", LOOKUP_PATH, params={"email": "drip@initech.example"}) as response:
        chunks = [len(chunk) for chunk in response.iter_raw()]
    assert response.headers["content-length"] == str(sum(chunks))
    # One byte per write; a busy reader may find a few together, never the whole body.
    assert len(chunks) >= sum(chunks) // 4
    assert time.monotonic() - started >= 0.05 * (sum(chunks) - 1) * 0.9


def test_hostile_knobs_come_through_the_control_api_and_are_checked(
        server: ClearbitServer, client: httpx.Client) -> None:
    answer = client.post("/_control/rules", json={
        "email": "x@initech.example", "status": 200, "size": 50_000, "encoding": "gzip",
        "chunked": True, "drip_ms": 0})
    assert answer.status_code == 200
    assert answer.json()["rules"]["x@initech.example"]["encoding"] == "gzip"
    assert len(find(client, "x@initech.example").content) == 50_000
    refused = client.post("/_control/rules", json={"email": "y@initech.example",
                                                   "encoding": "brotli"})
    assert refused.status_code == 400
    with pytest.raises(ValueError, match="encoding"):
        Rule(encoding="zip")
