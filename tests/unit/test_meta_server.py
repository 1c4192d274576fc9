"""The Meta-compatible server, over real HTTP on a free loopback port.

The conversions stage's tests trust this server to refuse what Graph refuses, to answer in
Graph's shapes and to do exactly what its knobs say. The machinery it shares with the Google
server (faults, latency, refusal, clock, rate limit, log, control API) is tested here once.
One server serves the module and is reset before every test; tests that need start-up
options get a server of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from processor.devkit.api_double import Fault
from processor.devkit.meta_server import DEFAULT_TOKEN, MetaServer
from tests.devkit_cli import help_text, serving

PIXEL = "1234567890"
EMAIL_HASH = hashlib.sha256(b"ann@initech.example").hexdigest()
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture(scope="module")
def shared_server() -> Iterator[MetaServer]:
    with MetaServer() as server:
        yield server


@pytest.fixture
def server(shared_server: MetaServer) -> MetaServer:
    shared_server.reset()
    return shared_server


def event(event_id: str = "e1", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "Purchase", "event_time": int(time.time()), "event_id": event_id,
        "action_source": "website", "event_source_url": "https://shop.example/checkout",
        "user_data": {"em": EMAIL_HASH, "client_user_agent": "Mozilla/5.0",
                      "fbc": "fb.1.1700000000000.IwAR2abc"},
        "custom_data": {"value": 12.5, "currency": "EUR"}}
    return {**base, **fields}


def send(server: MetaServer, *events: dict[str, Any], headers: dict[str, str] | None = None,
         pixel: str = PIXEL, **body: Any) -> httpx.Response:
    return httpx.post(server.events_url(pixel), json={"data": list(events), **body},
                      headers=AUTH if headers is None else headers, timeout=10)


def graph_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] in ("OAuthException", "GraphMethodException")
    assert error["fbtrace_id"]
    return error


# Success and deduplication


def test_accepted_events_are_counted_and_kept(server: MetaServer) -> None:
    response = send(server, event("e1"), event("e2"))
    assert response.status_code == 200
    body = response.json()
    assert body["events_received"] == 2
    assert body["messages"] == []
    assert body["fbtrace_id"] == response.headers["x-fb-trace-id"]
    kept = server.events()
    assert [e["event_id"] for e in kept] == ["e1", "e2"]
    assert kept[0]["pixel_id"] == PIXEL
    assert kept[0]["event"]["user_data"]["em"] == EMAIL_HASH


def test_duplicates_count_as_received_but_are_not_new_events(server: MetaServer) -> None:
    assert send(server, event("e1"), event("e1")).json()["events_received"] == 2
    assert send(server, event("e1")).json()["events_received"] == 1
    assert len(server.events()) == 1
    last = server.requests()[-1]
    assert (last["new"], last["duplicates"]) == (0, 1)


def test_dedup_is_by_pixel_event_name_and_event_id(server: MetaServer) -> None:
    send(server, event("e1"), event("e1", event_name="Lead"))
    send(server, event("e1"), pixel="999")
    no_id = event()
    del no_id["event_id"]
    send(server, no_id, no_id)
    assert len(server.events()) == 5  # e1/Purchase, e1/Lead, e1 on 999, twice without id


def test_dedup_ends_after_48_hours(server: MetaServer) -> None:
    send(server, event("e1"))
    server.advance_clock(47 * 3600)
    send(server, event("e1", event_time=int(time.time()) + 47 * 3600))
    assert len(server.events()) == 1
    server.advance_clock(2 * 3600)
    send(server, event("e1", event_time=int(time.time()) + 49 * 3600))
    assert len(server.events()) == 2


def test_test_events_are_kept_apart(server: MetaServer) -> None:
    send(server, event("e1"), test_event_code="TEST123")
    assert server.events() == []
    assert [e["test_event_code"] for e in server.events(test=True)] == ["TEST123"]
    send(server, event("e1"))  # the real one is not a duplicate of the test one
    assert len(server.events()) == 1
    assert server.requests()[0]["test_event_code"] is True


def test_a_form_body_works_as_graph_takes_it(server: MetaServer) -> None:
    response = httpx.post(server.events_url(PIXEL), headers=AUTH,
                          data={"data": json.dumps([event("e1")])})
    assert response.status_code == 200
    assert len(server.events()) == 1


# Authentication


def test_the_oauth_scheme_works_too(server: MetaServer) -> None:
    response = send(server, event(), headers={"Authorization": f"OAuth {DEFAULT_TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("headers", "code", "credential"), [
    ({}, 104, "missing"),
    ({"Authorization": "Bearer wrong"}, 190, "invalid"),
    ({"Authorization": f"Basic {DEFAULT_TOKEN}"}, 190, "invalid"),
], ids=["missing", "wrong", "other-scheme"])
def test_a_missing_or_wrong_token_is_refused(server: MetaServer, headers: dict[str, str],
                                             code: int, credential: str) -> None:
    response = send(server, event(), headers=headers)
    assert response.status_code == 400
    assert graph_error(response)["code"] == code
    assert '"invalid_token"' in response.headers["WWW-Authenticate"]
    assert server.requests()[-1]["credential"] == credential
    assert server.events() == []


def test_code_190_can_come_as_401() -> None:
    with MetaServer(token_error_status=401) as server:
        response = send(server, event(), headers={"Authorization": "Bearer wrong"})
    assert (response.status_code, graph_error(response)["code"]) == (401, 190)


def test_a_token_in_the_query_is_accepted_but_flagged(server: MetaServer) -> None:
    response = httpx.post(server.events_url(PIXEL), params={"access_token": DEFAULT_TOKEN},
                          json={"data": [event()]})
    assert response.status_code == 200
    line = server.requests()[-1]
    assert line["findings"] == ["access_token_in_query"]
    assert line["query"] == {}
    assert DEFAULT_TOKEN not in json.dumps(server.requests())


def test_a_token_in_the_query_can_be_refused(server: MetaServer) -> None:
    server.configure(query_auth="refuse")
    response = httpx.post(server.events_url(PIXEL), params={"access_token": DEFAULT_TOKEN},
                          json={"data": [event()]})
    assert (response.status_code, graph_error(response)["code"]) == (400, 190)
    assert "Authorization header" in graph_error(response)["message"]
    assert send(server, event()).status_code == 200


def test_the_expected_token_is_configurable(server: MetaServer) -> None:
    server.configure(token="other-token")  # noqa: S106 - a made-up token for the fake
    assert send(server, event()).status_code == 400
    assert send(server, event(), headers={"Authorization": "Bearer other-token"}
                ).status_code == 200


def test_the_token_never_reaches_the_log_config_or_events(server: MetaServer) -> None:
    send(server, event())
    httpx.post(server.events_url(PIXEL), params={"access_token": DEFAULT_TOKEN},
               json={"data": [event("e2")]})
    send(server, event(), headers={"Authorization": f"Bearer {DEFAULT_TOKEN}x"})
    for path in ("/_log", "/_config", "/_events"):
        assert DEFAULT_TOKEN not in httpx.get(server.url + path).text


# What Graph refuses


def test_the_path_needs_a_version_and_a_numeric_pixel(server: MetaServer) -> None:
    response = httpx.post(f"{server.url}/latest/{PIXEL}/events", headers=AUTH,
                          json={"data": [event()]})
    assert (response.status_code, graph_error(response)["code"]) == (400, 2500)
    response = send(server, event(), pixel="my-pixel")
    error = graph_error(response)
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100, 33, "GraphMethodException")


@pytest.mark.parametrize("body", [{}, {"data": []}, {"data": {"a": 1}}, {"data": "x"}])
def test_data_must_be_a_non_empty_list(server: MetaServer, body: dict[str, Any]) -> None:
    response = httpx.post(server.events_url(PIXEL), headers=AUTH, json=body)
    assert (response.status_code, graph_error(response)["code"]) == (400, 100)


def test_a_body_that_is_not_json_is_refused(server: MetaServer) -> None:
    response = httpx.post(server.events_url(PIXEL), headers=AUTH, content=b"{nope")
    assert (response.status_code, graph_error(response)["code"]) == (400, 100)


def test_at_most_1000_events(server: MetaServer) -> None:
    assert send(server, *(event(f"e{i}") for i in range(1000))).status_code == 200
    response = send(server, *(event(f"f{i}") for i in range(1001)))
    assert (response.status_code, graph_error(response)["code"]) == (400, 100)
    assert "1000" in graph_error(response)["message"]


def _without(key: str, *, user: bool = False) -> dict[str, Any]:
    built = event("bad")
    del (built["user_data"] if user else built)[key]
    return built


def _at(seconds_from_now: int) -> Callable[[], dict[str, Any]]:
    return lambda: event("bad", event_time=int(time.time()) + seconds_from_now)


def _user(**user_data: Any) -> Callable[[], dict[str, Any]]:
    """An event whose user_data is these keys (with a user agent, which website needs)."""
    return lambda: event("bad", user_data={"client_user_agent": "UA", **user_data}
                         if user_data else {})


def _fbc(fbc: str) -> Callable[[], dict[str, Any]]:
    return _user(em=EMAIL_HASH, fbc=fbc)


@pytest.mark.parametrize(("bad", "subcode", "title"), [
    (lambda: _without("event_name"), None, "Missing Event Name"),
    (lambda: event("bad", event_time=str(int(time.time()))), None, "Invalid Event Time"),
    (lambda: event("bad", event_time=True), None, "Invalid Event Time"),
    (_at(-8 * 86400), 2804003, "Event Timestamp Too Old"),
    (_at(300), None, "Event Timestamp In The Future"),
    (lambda: event("bad", action_source="web"), None, "Invalid Action Source"),
    (lambda: _without("action_source"), None, "Invalid Action Source"),
    (lambda: _without("event_source_url"), None, "Missing Website Parameters"),
    (lambda: _without("client_user_agent", user=True), None, "Missing Website Parameters"),
    (_user(), None, "Missing User Data"),
    (_user(em="ann@initech.example"), None, "Unhashed User Data"),
    (_user(em=EMAIL_HASH.upper()), None, "Unhashed User Data"),
    (_user(ph=["16505551212"]), None, "Unhashed User Data"),
    (_user(fn="ann"), None, "Unhashed User Data"),
    (_user(ln="smith"), None, "Unhashed User Data"),
    (_user(external_id="user-42"), None, "Unhashed User Data"),
    (_fbc("fb.1.170000.abc"), 2804001, "Click ID Incorrectly Formatted"),
    (_fbc("IwAR2abc"), 2804001, "Click ID Incorrectly Formatted"),
    (_fbc("fb.3.1700000000000.abc"), 2804001, "Click ID Incorrectly Formatted"),
])
def test_one_invalid_event_refuses_the_whole_request(
        server: MetaServer, bad: Callable[[], dict[str, Any]], subcode: int | None,
        title: str) -> None:
    response = send(server, event("good"), bad())
    assert response.status_code == 400
    error = graph_error(response)
    assert (error["code"], error.get("error_subcode"), error["error_user_title"]) == (
        100, subcode, title)
    assert error["is_transient"] is False
    assert error["error_user_msg"].startswith("Event 1:")
    assert server.events() == []  # Meta rejects a batch whole: the good event is not kept


@pytest.mark.parametrize("fields", [
    {"user_data": {"em": [EMAIL_HASH, EMAIL_HASH], "ph": EMAIL_HASH, "external_id": EMAIL_HASH,
                   "client_user_agent": "UA", "fbp": "fb.1.1700000000000.123"}},
    {"action_source": "system_generated", "user_data": {"external_id": EMAIL_HASH}},
    {"action_source": "physical_store", "event_source_url": None,
     "user_data": {"client_ip_address": "203.0.113.9"}},
    {"event_time": -6 * 86400},
    {"event_time": 50},
], ids=["hash-lists", "system-generated", "store-without-ua", "six-days-old", "50-s-ahead"])
def test_valid_variants_are_accepted(server: MetaServer, fields: dict[str, Any]) -> None:
    if "event_time" in fields:  # relative to now, which is later than collection
        fields = {"event_time": int(time.time()) + fields["event_time"]}
    assert send(server, event(**fields)).status_code == 200


def test_the_seven_day_rule_follows_the_servers_clock(server: MetaServer) -> None:
    server.set_clock_offset(8 * 86400)
    response = send(server, event())
    assert graph_error(response).get("error_subcode") == 2804003
    server.set_clock_offset(-86400)  # a day behind: now the event is a day ahead
    assert "Future" in graph_error(send(server, event()))["error_user_title"]


# Scripted faults


def test_a_fault_for_an_event_id(server: MetaServer) -> None:
    server.fail(code=100, error_subcode=2804003, event_ids=["e2"], times=1)
    failed = send(server, event("e1"), event("e2"))
    assert (failed.status_code, graph_error(failed)["error_subcode"]) == (400, 2804003)
    assert send(server, event("e3")).status_code == 200
    assert send(server, event("e2")).status_code == 200  # times=1: used up
    assert server.requests()[0]["cause"] == "scripted"


def test_a_fault_for_a_request_number(server: MetaServer) -> None:
    server.fail(500, request=2)
    statuses = [send(server, event(f"e{i}")).status_code for i in range(3)]
    assert statuses == [200, 500, 200]
    error = server.requests()[1]
    assert error["error"] == {"code": 1, "error_subcode": None}


@pytest.mark.parametrize(("fault", "status", "code", "transient"), [
    ({"status": 500}, 500, 1, True),
    ({"status": 503}, 503, 2, True),
    ({"status": 403}, 403, 10, False),
    ({"status": 401}, 401, 190, False),
    ({"status": 429}, 429, 17, True),
    ({"code": 4}, 403, 4, True),
    ({"code": 17}, 400, 17, True),
    ({"code": 613}, 400, 613, True),
    ({"code": 10}, 403, 10, False),
    ({"code": 190}, 400, 190, False),
    ({"code": 2, "is_transient": False, "status": 502}, 502, 2, False),
])
def test_a_fault_answers_in_graphs_shape(server: MetaServer, fault: dict[str, Any],
                                         status: int, code: int, transient: bool) -> None:
    server.fail(**fault)
    response = send(server, event())
    error = graph_error(response)
    assert (response.status_code, error["code"], error["is_transient"]) == (
        status, code, transient)


def test_a_throttling_storm_for_a_time_window(server: MetaServer) -> None:
    server.throttle(0.4)
    throttled = send(server, event())
    error = graph_error(throttled)
    assert (throttled.status_code, error["code"], error["error_subcode"]) == (400, 17, 2446079)
    assert error["is_transient"] is True
    time.sleep(0.5)
    assert send(server, event()).status_code == 200


def test_a_throttling_storm_as_429_with_retry_after(server: MetaServer) -> None:
    server.script(faults=[{"code": 17, "status": 429, "seconds": 5, "retry_after": 3}])
    response = send(server, event())
    assert (response.status_code, graph_error(response)["code"]) == (429, 17)
    assert response.headers["Retry-After"] == "3"


def test_a_fault_that_closes_the_connection(server: MetaServer) -> None:
    server.fail(0, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        send(server, event())
    assert server.requests()[-1]["status"] == 0
    assert send(server, event()).status_code == 200


def test_a_fault_can_only_slow_down(server: MetaServer) -> None:
    server.fail(delay_ms=300, event_ids=["slow"])
    started = time.monotonic()
    assert send(server, event("slow")).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert len(server.events()) == 1


def test_faults_filtered_by_api_name(server: MetaServer) -> None:
    server.fail(503, api="other")
    assert send(server, event()).status_code == 200
    server.fail(503, api="events", request=2)  # the 2nd request of that API
    assert send(server, event()).status_code == 503


def test_the_first_matching_fault_answers(server: MetaServer) -> None:
    server.fail(503, times=1)
    server.fail(500)
    assert [send(server, event()).status_code for _ in range(2)] == [503, 500]
    server.clear_faults()
    assert send(server, event()).status_code == 200


def test_faults_over_the_control_api(server: MetaServer) -> None:
    control = httpx.post(server.url + "/_script", json={"faults": [
        {"status": 503, "request": 1}, {"code": 17, "event_ids": ["x"]}]})
    assert control.status_code == 200
    assert [f.get("status") for f in control.json()["faults"]] == [503, None]
    assert send(server, event()).status_code == 503
    assert graph_error(send(server, event("x")))["code"] == 17
    assert httpx.delete(server.url + "/_script").json()["faults"] == []
    assert send(server, event("x")).status_code == 200


@pytest.mark.parametrize("body", [
    {"faults": [{"status": 99}]},
    {"faults": [{"status": 500, "colour": "red"}]},
    {"faults": [{"event_ids": "e1"}]},
    {"faults": {"status": 500}},
    {"latency_ms": -1},
    {"refuse_seconds": 0},
    {"query_auth": "sometimes"},
    {"what": 1},
], ids=["status", "unknown-field", "ids-not-list", "not-list", "latency", "refuse",
        "query-auth", "unknown-knob"])
def test_a_bad_script_is_refused_with_400(server: MetaServer, body: dict[str, Any]) -> None:
    response = httpx.post(server.url + "/_script", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_a_script_that_is_not_a_json_object_is_refused(server: MetaServer) -> None:
    assert httpx.post(server.url + "/_script", content=b"[1]").status_code == 400
    assert httpx.post(server.url + "/_script", content=b"{x").status_code == 400


# Latency, refusal, rate limit, clock


def test_latency_delays_every_answer_without_serializing_them(server: MetaServer) -> None:
    server.set_latency(300)

    async def five() -> list[int]:
        async with httpx.AsyncClient(headers=AUTH, timeout=10) as http:
            responses = await asyncio.gather(*(
                http.post(server.events_url(PIXEL), json={"data": [event(f"e{i}")]})
                for i in range(5)))
        return [r.status_code for r in responses]
    started = time.monotonic()
    assert asyncio.run(five()) == [200] * 5
    assert 0.3 <= time.monotonic() - started < 1.2


def test_refused_connections_and_back(server: MetaServer) -> None:
    server.refuse()
    with pytest.raises(httpx.ConnectError):
        send(server, event())
    assert server.config()["refusing"] is True
    server.accept()
    assert send(server, event()).status_code == 200


def test_refusing_over_http_ends_by_itself(server: MetaServer) -> None:
    assert httpx.post(server.url + "/_script", json={"refuse_seconds": 0.3}).status_code == 200
    with pytest.raises(httpx.ConnectError):
        send(server, event())
    time.sleep(0.5)
    assert send(server, event()).status_code == 200


def test_a_per_minute_rate_limit_answers_code_17() -> None:
    with MetaServer(rate_limit_per_minute=2) as server:
        statuses = [send(server, event(f"e{i}")) for i in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 400]
        assert graph_error(statuses[2])["code"] == 17
        assert 1 <= int(statuses[2].headers["Retry-After"]) <= 60
        assert server.requests()[-1]["cause"] == "rate_limit"
        server.set_rate_limit("events", 0)
        assert send(server, event()).status_code == 200


def test_the_clock_offset_is_reported_and_reset(server: MetaServer) -> None:
    server.script(clock_offset_seconds=100, advance_clock_seconds=20)
    assert server.config()["clock_offset_seconds"] == 120
    send(server, event(event_time=int(time.time()) + 120))
    assert server.requests()[-1]["clock"] - time.time() == pytest.approx(120, abs=5)
    server.reset()
    assert server.config()["clock_offset_seconds"] == 0


# Log, reset, control API


def test_the_request_log(server: MetaServer) -> None:
    send(server, event("e1"), event("e2"))
    send(server, event(), headers={})
    log = httpx.get(server.url + "/_log").json()
    assert [(line["seq"], line["status"]) for line in log] == [(1, 200), (2, 400)]
    first = log[0]
    assert first["path"] == f"/v24.0/{PIXEL}/events"
    assert (first["api"], first["events"], first["event_ids"]) == ("events", 2, ["e1", "e2"])
    assert (first["auth"], first["credential"], first["new"]) == ("header", "valid", 2)
    assert httpx.get(server.url + "/_log", params={"limit": 1}).json() == log[-1:]
    assert httpx.get(server.url + "/_log", params={"api": "nope"}).json() == []


def test_the_log_is_bounded() -> None:
    with MetaServer(log_size=2) as server:
        for i in range(3):
            send(server, event(f"e{i}"))
        assert [line["seq"] for line in server.requests()] == [2, 3]


def test_events_over_the_control_api(server: MetaServer) -> None:
    send(server, event("e1"))
    send(server, event("t1"), test_event_code="T")
    assert [e["event_id"] for e in httpx.get(server.url + "/_events").json()] == ["e1"]
    test = httpx.get(server.url + "/_events", params={"test": "true"}).json()
    assert [e["event_id"] for e in test] == ["t1"]
    assert server.events(pixel_id="other") == []


def test_reset_returns_to_the_start_configuration() -> None:
    start = [Fault(status=503, request=1)]
    with MetaServer(latency_ms=10, faults=start) as server:
        assert send(server, event()).status_code == 503
        server.set_latency(500)
        server.configure(query_auth="refuse")
        server.fail(500)
        send(server, event())
        assert httpx.post(server.url + "/_reset").status_code == 200
        config = server.config()
        assert (config["latency_ms"], config["query_auth"]) == (10, "accept")
        assert [f["request"] for f in config["faults"]] == [1]
        assert server.requests() == []
        assert server.events() == []
        assert send(server, event()).status_code == 503  # the start-up fault is armed again


def test_health_and_config(server: MetaServer) -> None:
    assert httpx.get(server.url + "/_health").json() == {"ok": True}
    config = httpx.get(server.url + "/_config").json()
    assert (config["query_auth"], config["token_error_status"]) == ("accept", 400)
    assert "token" not in config


# Running it


def test_start_on_a_busy_port_raises() -> None:
    with MetaServer() as first:
        second = MetaServer(port=int(first.url.rsplit(":", 1)[1]))
        with pytest.raises(OSError, match="in use"):
            second.start()
        second.stop()


def test_methods_need_a_running_server() -> None:
    with pytest.raises(RuntimeError, match="start"):
        MetaServer().events()


def test_bad_settings_are_refused(server: MetaServer) -> None:
    with pytest.raises(ValueError, match="query_auth"):
        MetaServer(query_auth="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency"):
        server.set_latency(-1)
    with pytest.raises(ValueError, match="status"):
        server.fail(99)


def test_the_command_line_help() -> None:
    text = help_text("processor.devkit.meta_server")
    for option in ("--port", "--token", "--query-auth", "--fault", "--rate-limit",
                   "--clock-offset", "--latency-ms"):
        assert option in text


def test_the_command_line_prints_its_url_and_stops_on_sigterm() -> None:
    with serving("processor.devkit.meta_server", "--token", "cli-token",
                 "--fault", '{"status": 503, "request": 2}') as served:
        target = f"{served.url}/v24.0/{PIXEL}/events"
        headers = {"Authorization": "Bearer cli-token"}
        assert httpx.post(target, headers=headers, json={"data": [event()]}).status_code == 200
        assert httpx.post(target, headers=headers, json={"data": [event()]}).status_code == 503
    assert "cli-token" not in served.stderr
