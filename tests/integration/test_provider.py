"""Every lookup counts: single-flight, rate limits and the status vocabulary, on the real
broker against the real Clearbit-compatible server (whose request log the tests read)."""

from __future__ import annotations

import logging
from collections import Counter

import orjson
import pytest
from prometheus_client import generate_latest

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.harness import (
    API_KEY,
    Names,
    caught_up,
    headers_of,
    produce,
    read,
    running_stage,
    sample,
    wait_for,
)


def people(count: int, start: int = 0) -> list[tuple[bytes, dict[str, object]]]:
    return [(f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}"))
            for i in range(start, start + count)]


def test_a_thousand_events_for_one_email_make_one_request_and_junk_makes_none(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    same = [(f"u{i}".encode(), identify("  Grace.Hopper@Initech.example", user_id=f"u{i}"))
            for i in range(1000)]
    junk = [(b"j", identify(f"junk{i}@@nowhere", user_id="j")) for i in range(50)]
    produce(kafka_bootstrap, names.input, same + junk)
    with running_stage(names.settings(kafka_bootstrap, clearbit.url)):
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 1050)
    assert len(out) == 1050
    assert clearbit.stats()["by_email_count"] == {"grace.hopper@initech.example": 1}


def test_rate_limit_is_respected_not_discovered(kafka_bootstrap: str, names: Names,
                                                clearbit: ClearbitServer) -> None:
    clearbit.set_rate_limit(300)  # the server enforces 300/min over a sliding minute
    produce(kafka_bootstrap, names.input, people(30))
    settings = names.settings(kafka_bootstrap, clearbit.url, rate_limit_per_minute=300)
    with running_stage(settings) as stage:
        read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 30)
        waited = sample(stage.sensor, "enrichment_rate_limiter_waits_total")
    stats = clearbit.stats()
    assert stats["by_status"] == {"200": 30}  # not a single 429
    assert stats["max_requests_in_any_60s_window"] <= 300
    assert waited > 0  # the client spaced its requests itself
    times = [entry["time"] for entry in clearbit.requests()]
    # 300/min is one request per 0.2 s. The server stamps each request when its thread
    # gets to it, so one stamped late makes one gap short and the next long (0.185 s then
    # seen on a loaded machine): no burst means every run of requests spans its count.
    spans = [(times[i] - times[j]) - (i - j) * 0.2
             for j in range(len(times)) for i in range(j + 1, len(times))]
    assert min(spans) >= -0.05


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "reset-header"])
def test_429_holds_the_whole_pool_and_nothing_is_dead_lettered(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, retry_after: bool) -> None:
    clearbit.force_429(3.0, retry_after=retry_after)
    produce(kafka_bootstrap, names.input, people(20))
    settings = names.settings(kafka_bootstrap, clearbit.url, max_in_flight=4)
    with running_stage(settings) as stage:
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 20)
        retries = sample(stage.sensor, "enrichment_lookup_retries_total", provider="clearbit",
                         reason="rate_limited")
    assert [m.topic() for m in out] == [names.output] * 20
    log = clearbit.requests()
    limited = [e for e in log if e["status"] == 429]
    # Only requests already on their way when the first 429 came back were refused:
    # the rest of the pool waited for the time the server named.
    assert 1 <= len(limited) <= 4
    assert retries == len(limited)
    first = limited[0]["time"]
    after = [e for e in log if e["time"] > first + 0.5]
    assert after
    assert all(e["status"] == 200 for e in after)
    assert min(e["time"] for e in after) >= first + 2.0


def test_quota_exhausted_pauses_probes_and_resumes(kafka_bootstrap: str, names: Names,
                                                    clearbit: ClearbitServer) -> None:
    clearbit.set_quota_exhausted(True)
    produce(kafka_bootstrap, names.input, people(15))
    settings = names.settings(kafka_bootstrap, clearbit.url, quota_retry_interval="1s")
    with running_stage(settings) as stage:
        wait_for(lambda: sample(stage.sensor, "enrichment_quota_exhausted",
                                provider="clearbit") == 1, 20, "the quota metric")
        probes_before = clearbit.stats()["by_status"].get("402", 0)
        wait_for(lambda: clearbit.stats()["by_status"].get("402", 0) >= probes_before + 2, 10,
                 "two more probes")
        clearbit.set_quota_exhausted(False)
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 15)
        wait_for(lambda: sample(stage.sensor, "enrichment_quota_exhausted",
                                provider="clearbit") == 0, 10, "the quota metric to clear")
    assert [m.topic() for m in out] == [names.output] * 15
    stats = clearbit.stats()
    # While exhausted, about one probe a second went out, not a request per record.
    assert stats["by_status"]["402"] <= probes_before + 6
    assert stats["by_status"]["200"] == 15


def test_queued_202_is_asked_again_without_blocking_others(kafka_bootstrap: str, names: Names,
                                                           clearbit: ClearbitServer) -> None:
    queued = [(b"q", identify("queued.person@initech.example", user_id="q"))]
    produce(kafka_bootstrap, names.input, queued + people(10))
    settings = names.settings(kafka_bootstrap, clearbit.url, max_in_flight=1,
                              queued_retry_interval="500ms")
    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 11)
    assert len(out) == 11
    counts = clearbit.stats()["by_email_count"]
    assert counts["queued.person@initech.example"] == 3  # 202, 202, 200
    # With one worker, the ten others were not held up behind the re-polling.
    order = [e["email"] for e in clearbit.requests()]
    assert order.index("queued.person@initech.example") < order.index(person_email(9)) or \
        order.count("queued.person@initech.example") == 3


def test_open_circuit_sends_nothing_until_its_probe(kafka_bootstrap: str, names: Names,
                                                    clearbit: ClearbitServer) -> None:
    clearbit.set_outage("status", status=503)
    produce(kafka_bootstrap, names.input, people(10))
    settings = names.settings(kafka_bootstrap, clearbit.url, max_in_flight=1,
                              breaker_threshold=3, breaker_reset="3s", max_attempts=100)
    with running_stage(settings) as stage:
        wait_for(lambda: clearbit.stats()["total"] >= 3, 20, "three failures")
        wait_for(lambda: sample(stage.sensor, "enrichment_circuit_state",
                                provider="clearbit") == 2, 10, "the circuit to open")
        opened_total = clearbit.stats()["total"]
        wait_for(lambda: clearbit.stats()["total"] > opened_total, 10, "the probe")
        log = clearbit.requests()
        clearbit.set_outage("off")
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 10)
    assert opened_total == 3
    gap = log[3]["time"] - log[2]["time"]
    assert gap >= 2.5  # zero requests while the circuit was open (3 s)
    assert [m.topic() for m in out] == [names.output] * 10  # within the deadline: no dead letter


def test_error_bodies_in_both_shapes_are_read(kafka_bootstrap: str, names: Names,
                                              clearbit: ClearbitServer) -> None:
    clearbit.set_rule("listy@initech.example", 422,
                      body={"error": [{"type": "email_invalid", "message": "bad TLD"}]})
    clearbit.set_rule("objecty@initech.example", 422,
                      body={"error": {"type": "params_invalid", "message": "role address"}})
    clearbit.set_rule("texty@initech.example", 422, body="<html>nope</html>")
    produce(kafka_bootstrap, names.input, [
        (b"k", identify(e, user_id="u")) for e in
        ("listy@initech.example", "objecty@initech.example", "texty@initech.example")])
    with running_stage(names.settings(kafka_bootstrap, clearbit.url)):
        letters = read(kafka_bootstrap, [names.dlq], until=lambda m: len(m) >= 3)
    messages = sorted(headers_of(m)["__connect.errors.exception.message"] for m in letters)
    assert {headers_of(m)["__enrichment.errors.reason"] for m in letters} == {"provider_rejected"}
    assert any("email_invalid: bad TLD" in m for m in messages)
    assert any("params_invalid: role address" in m for m in messages)
    assert any(m.endswith("422") for m in messages)


def test_the_key_never_appears_in_logs_metrics_or_dead_letters(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clearbit.set_rule(person_email(1), 500)
    clearbit.set_rule(person_email(2), 422)
    produce(kafka_bootstrap, names.input, people(4))
    settings = names.settings(kafka_bootstrap, clearbit.url, max_attempts=2,
                              breaker_threshold=100)
    with running_stage(settings) as stage:
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 4)
        scrape = generate_latest(stage.sensor.registry).decode()
    dead = b"".join(v or b"" for m in out if m.topic() == names.dlq
                    for _, v in (m.headers() or []) if isinstance(v, bytes))
    assert API_KEY not in caplog.text
    assert caplog.text  # something was logged, so the checks below can fail
    for i in range(4):
        assert person_email(i) not in caplog.text
        assert person_email(i).replace("@", "%40") not in caplog.text
    assert API_KEY not in scrape
    assert API_KEY.encode() not in dead
    assert "@" not in scrape  # no email in any label either
    bad = names.settings(kafka_bootstrap, clearbit.url, clearbit_api_key="sk_other_secret",
                         group_id=names.group + "-2")
    with running_stage(bad, expect_failure=True) as stage:
        stage.thread.join(30)
    assert "sk_other_secret" not in caplog.text
    assert "sk_other_secret" not in str(stage.errors)


def test_hunter_provider_keeps_the_clearbit_traits(kafka_bootstrap: str, names: Names) -> None:
    with ClearbitServer(key="hunter-test-key", flavor="hunter") as hunter:
        hunter.set_rule(person_email(3), 403, times=1)  # Hunter's "slow down"
        produce(kafka_bootstrap, names.input, people(5))
        settings = names.settings(kafka_bootstrap, "http://unused.invalid", provider="hunter",
                                  hunter_api_key="hunter-test-key", hunter_base_url=hunter.url)
        with running_stage(settings):
            out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 5)
            wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 20,
                     "commits")
        log = hunter.requests()
    assert [m.topic() for m in out] == [names.output] * 5
    event = orjson.loads(out[0].value())
    assert event["traits"]["clearbit_person_name_full_name"]
    assert all(e["auth_scheme"] == "x-api-key" for e in log)
    assert all(e["params"] == {"clearbit_format": "true"} for e in log)
    assert Counter(e["status"] for e in log) == {200: 5, 403: 1}
