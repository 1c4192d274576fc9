"""A hostile Clearbit-compatible server against the stage on the real broker, with both
HTTP clients: oversized, undecodable, drip-fed and malformed answers and an endless
Retry-After each get their outcome, and the records behind them come out."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from processor.core.enrichment.events import output_message_id
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.harness import (
    Names,
    caught_up,
    headers_of,
    produce,
    read,
    read_all,
    running_stage,
    sample,
    wait_for,
)

CLIENTS = ["aiohttp", "httpx"]
# Each client in each delivery mode, without running all four combinations every time.
MODES = [("aiohttp", "at-least-once"), ("httpx", "exactly-once"),
         ("httpx", "at-least-once"), ("aiohttp", "exactly-once")]


def events(*emails: str, key: bytes = b"same-key") -> list[tuple[bytes, dict[str, Any]]]:
    """One event per email, all with one key: one partition, in this order."""
    return [(key, identify(email, user_id=f"u{i}", message_id=f"m{i}"))
            for i, email in enumerate(emails)]


def outcomes(bootstrap: str, names: Names, count: int) -> dict[str, tuple[str, dict[str, str]]]:
    """``m<i>`` -> (``enriched`` or the dead letter's reason, its headers), asserting that
    each of the ``count`` inputs came out exactly once (read_committed)."""
    by_output = {output_message_id(f"m{i}", ""): f"m{i}" for i in range(count)}
    seen: Counter[str] = Counter()
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for message in read_all(bootstrap, [names.output, names.dlq]):
        event = orjson.loads(message.value() or b"{}")
        headers = headers_of(message)
        if message.topic() == names.output:
            tag, outcome = by_output[event["messageId"]], "enriched"
        else:
            tag, outcome = event["messageId"], headers["__enrichment.errors.reason"]
        seen[tag] += 1
        found[tag] = (outcome, headers)
    assert seen == dict.fromkeys(by_output.values(), 1), "an input lost or out twice"
    return found


def run_twice(settings: Any, bootstrap: str, names: Names,
              during: Callable[[Any], None] = lambda stage: None) -> None:
    """Run the stage until every input is committed, then once more: the second run must
    find nothing to do (the audit then shows nothing came out twice)."""
    for run in range(2):
        with running_stage(settings) as stage:
            wait_for(lambda: caught_up(bootstrap, names.group, names.input, 3), 90,
                     "every input to be committed")
            if run == 0:
                during(stage)


@pytest.mark.parametrize(("client", "delivery"), MODES)
def test_answers_over_the_cap_are_dead_letters_and_the_records_behind_them_come_out(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str,
        delivery: str) -> None:
    clearbit.set_rule("declared@initech.example", 200, size=1_500_000)
    clearbit.set_rule("bomb@initech.example", 200, size=30_000_000, encoding="gzip",
                      chunked=True)
    produce(kafka_bootstrap, names.input, events(
        person_email(1), "declared@initech.example", person_email(2), "bomb@initech.example",
        person_email(3)))
    settings = names.settings(kafka_bootstrap, clearbit.url, http_client=client,
                              delivery=delivery, transactional_id=f"{names.group}-tx")
    run_twice(settings, kafka_bootstrap, names)
    found = outcomes(kafka_bootstrap, names, 5)
    assert {tag: outcome for tag, (outcome, _) in found.items()} == {
        "m0": "enriched", "m1": "answer_too_large", "m2": "enriched",
        "m3": "answer_too_large", "m4": "enriched"}
    assert "more than 1048576 bytes" in found["m1"][1]["__connect.errors.exception.message"]
    # Refused, not retried: one request each (across both runs).
    counts = clearbit.stats()["by_email_count"]
    assert counts["declared@initech.example"] == counts["bomb@initech.example"] == 1


@pytest.mark.parametrize(("client", "delivery"), MODES[:2])
def test_an_undecodable_body_is_a_dead_letter_not_a_stop(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str,
        delivery: str) -> None:
    clearbit.set_rule("badgzip@initech.example", 200, encoding="bad-gzip")
    produce(kafka_bootstrap, names.input, events(
        person_email(1), "badgzip@initech.example", person_email(2)))
    settings = names.settings(kafka_bootstrap, clearbit.url, http_client=client,
                              delivery=delivery, transactional_id=f"{names.group}-tx")
    run_twice(settings, kafka_bootstrap, names)
    found = outcomes(kafka_bootstrap, names, 3)
    assert [found[f"m{i}"][0] for i in range(3)] == ["enriched", "bad_answer", "enriched"]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_drip_fed_answer_ends_at_the_request_timeout(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str) -> None:
    # 30 bytes at one every 0.5 s: 15 s if read to the end; the timeout is 1 s.
    clearbit.set_rule("drip@initech.example", 200, body={"person": None, "company": None},
                      drip_ms=500)
    produce(kafka_bootstrap, names.input, events("drip@initech.example", person_email(1)))
    settings = names.settings(kafka_bootstrap, clearbit.url, http_client=client,
                              request_timeout="1s", max_attempts=2, breaker_threshold=100)
    started = time.monotonic()
    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 2)
        took = time.monotonic() - started
    (letter,) = [m for m in out if m.topic() == names.dlq]
    assert [m.topic() for m in out].count(names.output) == 1  # the record behind it
    headers = headers_of(letter)
    assert headers["__enrichment.errors.reason"] == "retries_exhausted"
    assert "last: timeout" in headers["__connect.errors.exception.message"]
    assert took < 10  # two attempts of 1 s and a backoff, not 2 x 15 s
    assert clearbit.stats()["by_email_count"]["drip@initech.example"] == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_an_endless_retry_after_holds_lookups_no_longer_than_the_cap(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str) -> None:
    clearbit.set_rule(person_email(1), 429, times=1, headers={"Retry-After": "999999999"})
    produce(kafka_bootstrap, names.input, events(person_email(1), person_email(2)))
    settings = names.settings(kafka_bootstrap, clearbit.url, http_client=client,
                              rate_limit_max_wait="2s", max_in_flight=1)
    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 2)
    assert [m.topic() for m in out] == [names.output] * 2  # waited, not dead-lettered
    log = clearbit.requests()
    assert [e["status"] for e in log] == [429, 200, 200]
    held = log[1]["time"] - log[0]["time"]
    assert 1.8 <= held < 6


@pytest.mark.parametrize("client", CLIENTS)
def test_malformed_200s_are_each_emails_dead_letters_and_the_circuit_stays_closed(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str) -> None:
    bodies: list[Any] = ["not json at all", "<html>maintenance</html>",
                         {"person": [1, 2], "company": None}, {"person": None, "company": 7},
                         [{"person": {}}], "", {"person": "Ada"}]
    odd = [f"odd{i}@initech.example" for i in range(len(bodies))]
    for email, body in zip(odd, bodies, strict=True):
        clearbit.set_rule(email, 200, body=body)
    clearbit.set_rule("unnamed@initech.example", 200,
                      body={"person": {"": 1, "\U0001f600": {"x": 2}, "name": {"fullName": "A"},
                                       "name_full_name": "B"}, "company": None})
    produce(kafka_bootstrap, names.input, events(*odd, "unnamed@initech.example",
                                                 person_email(1)))
    # Seven odd answers in a row with a threshold of three: the circuit must not open.
    settings = names.settings(kafka_bootstrap, clearbit.url, http_client=client,
                              breaker_threshold=3, max_in_flight=1)
    with running_stage(settings) as stage:
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 9)
        circuit = sample(stage.sensor, "enrichment_circuit_state", provider="clearbit")
        bad = sample(stage.sensor, "enrichment_lookups_total", provider="clearbit",
                     status="bad_body")
    letters = [m for m in out if m.topic() == names.dlq]
    assert {headers_of(m)["__enrichment.errors.reason"] for m in letters} == {"bad_answer"}
    assert len(letters) == len(odd)
    assert circuit == 0
    assert bad == len(odd)
    assert all(clearbit.stats()["by_email_count"][e] == 1 for e in odd)  # not retried
    traits = {orjson.loads(m.value() or b"")["userId"]: orjson.loads(m.value() or b"")["traits"]
              for m in out if m.topic() == names.output}
    assert traits[f"u{len(odd)}"] == {"email": "unnamed@initech.example",
                                      "clearbit_person_name_full_name": "A"}


def test_an_answer_under_the_cap_whose_output_the_topic_refuses_is_a_dead_letter(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], names: Names,
        clearbit: ClearbitServer) -> None:
    small = kafka_topics("out-small", 3, config={"max.message.bytes": "200000"})
    names = Names(input=names.input, output=small, dlq=names.dlq, group=names.group)
    clearbit.set_rule("wordy@initech.example", 200, size=500_000)
    produce(kafka_bootstrap, names.input, events("wordy@initech.example", person_email(1)))
    with running_stage(names.settings(kafka_bootstrap, clearbit.url)):
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 2)
    (letter,) = [m for m in out if m.topic() == names.dlq]
    assert [m.topic() for m in out].count(small) == 1
    assert headers_of(letter)["__enrichment.errors.reason"] == "output_too_large"
