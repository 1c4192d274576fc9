"""The enrichment stage end to end: a real broker, the real Clearbit-compatible server."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import pytest

from processor.core.enrichment.mapping import to_traits
from processor.core.errors import ProviderAuthError
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.harness import (
    API_KEY,
    Names,
    caught_up,
    committed_offsets,
    count_of,
    end_offsets,
    headers_of,
    produce,
    read,
    running_stage,
    wait_for,
)


def mixed_batch() -> tuple[list[tuple[bytes | None, Any]], Counter[tuple[str, str]]]:
    """A few hundred events of every kind, and how many of each outcome they must give."""
    items: list[tuple[bytes | None, Any]] = []
    expect: Counter[tuple[str, str]] = Counter()

    def add(count: int, outcome: tuple[str, str], make: Any) -> None:
        for i in range(count):
            key, value = make(i)
            items.append((key, value))
        expect[outcome] += count

    # 160 enrichable events over 60 distinct people (so the cache and single-flight work).
    add(160, ("enriched", ""), lambda i: (f"user-{i % 60}".encode(), identify(
        person_email(i % 60), user_id=f"user-{i % 60}", message_id=f"enrich-{i}")))
    # 40 anonymous visitors without a Kafka key.
    add(40, ("enriched", ""), lambda i: (None, identify(
        f"visitor{i}@gmail.com", anonymous_id=f"anon-{i}", message_id=f"anon-{i}")))
    add(30, ("skipped", "no_email"), lambda i: (b"k", identify(None, user_id=f"n{i}")))
    add(30, ("skipped", "not_identify"), lambda i: (b"k", {"type": "track", "userId": "u",
                                                          "event": "Clicked"}))
    add(20, ("skipped", "integration_disabled"), lambda i: (b"k", identify(
        "ada@initech.example", user_id="u", integrations={"All": False})))
    add(20, ("skipped", "not_found"), lambda i: (b"k", identify(
        f"notfound{i}@initech.example", user_id="u")))
    add(20, ("dead_lettered", "not_json"), lambda i: (f"bad-{i}".encode(), b"{nope " + bytes([i])))
    add(10, ("dead_lettered", "not_an_object"), lambda i: (b"k", b'["identify"]'))
    add(20, ("dead_lettered", "invalid_email"), lambda i: (b"k", identify(
        f"broken{i}@@example", user_id="u")))
    add(20, ("dead_lettered", "missing_identity"), lambda i: (b"k", identify(
        "ada@initech.example")))
    add(10, ("dead_lettered", "invalid_field"), lambda i: (b"k", identify(
        "ada@initech.example", user_id=123)))
    add(20, ("dead_lettered", "provider_rejected"), lambda i: (b"k", identify(
        f"invalid{i}@initech.example", user_id="u")))
    # Interleave kinds so every partition sees a mix.
    items = items[::2] + items[1::2]
    return items, expect


def test_mixed_batch_every_event_accounted_for(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    items, expect = mixed_batch()
    total = produce(kafka_bootstrap, names.input, items)
    assert total == sum(expect.values()) == 400
    enriched_count = expect[("enriched", "")]
    dead_count = sum(n for (outcome, _), n in expect.items() if outcome == "dead_lettered")

    settings = names.settings(kafka_bootstrap, clearbit.url)
    with running_stage(settings) as stage:
        out = read(kafka_bootstrap, [names.output, names.dlq],
                   until=lambda m: len(m) >= enriched_count + dead_count)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 30,
                 "offsets committed")
        wait_for(lambda: sum(_outcome_counts(stage.sensor).values()) == total, 10,
                 "every event counted")
        events = {k: v for k, v in _outcome_counts(stage.sensor).items() if v}

    # One paid lookup per distinct email: 60 people + 40 visitors + 20 not found + 20 rejected.
    stats = clearbit.stats()
    assert stats["total"] == 140
    assert max(stats["by_email_count"].values()) == 1

    # Exactly one output per enrichable event, with the right traits.
    outputs = [m for m in out if m.topic() == names.output]
    assert len(outputs) == enriched_count
    ids = [orjson.loads(m.value())["messageId"] for m in outputs]
    assert len(set(ids)) == enriched_count
    records: dict[str, Any] = {}
    for message in outputs:
        event = orjson.loads(message.value())
        email = event["traits"]["email"]
        if email not in records:
            body = httpx.get(f"{clearbit.url}/v2/combined/find", params={"email": email},
                             auth=(API_KEY, ""), timeout=10).json()
            records[email] = {"email": email, **to_traits(body["person"], body["company"])}
        assert event["traits"] == records[email]
        assert event["type"] == "identify"
        assert event["integrations"] == {"Clearbit Enrichment": False}
        identity = event.get("userId") or event.get("anonymousId")
        assert message.key() == identity.encode()

    # Every dead letter carries its reason, and the original bytes.
    letters = [m for m in out if m.topic() == names.dlq]
    reasons = Counter(headers_of(m)["__enrichment.errors.reason"] for m in letters)
    assert reasons == {r: n for (o, r), n in expect.items() if o == "dead_lettered"}
    originals = {v if isinstance(v, bytes) else orjson.dumps(v) for _, v in items}
    assert all(m.value() in originals for m in letters)

    # in = enriched + skipped + dead-lettered, each reason as expected.
    assert events == dict(expect)
    assert sum(events.values()) == total


def _outcome_counts(sensor: Any) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for metric in sensor.registry.collect():
        if metric.name == "enrichment_events":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["outcome"], sample.labels["reason"])] = int(sample.value)
    return counts


def test_output_flowing_back_into_the_input_is_not_enriched_again(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    # The output topic *is* the input topic: the loop Segment's own destination had.
    produce(kafka_bootstrap, names.input, [
        (f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}")) for i in range(10)])
    settings = names.settings(kafka_bootstrap, clearbit.url, output_topic=names.input)
    with running_stage(settings) as stage:
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3) and
                 sum(end_offsets(kafka_bootstrap, names.input, 3).values()) == 20,
                 30, "10 outputs appended and everything committed")
        wait_for(lambda: sum(_outcome_counts(stage.sensor).values()) == 20, 10,
                 "every event counted")
        counts = _outcome_counts(stage.sensor)
    assert counts[("enriched", "")] == 10
    assert counts[("skipped", "integration_disabled")] == 10
    assert sum(end_offsets(kafka_bootstrap, names.input, 3).values()) == 20
    assert clearbit.stats()["total"] == 10


def test_refused_key_stops_the_stage_and_commits_nothing_in_flight(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    produce(kafka_bootstrap, names.input, [
        (b"same-key", identify(person_email(i), user_id="u")) for i in range(5)])
    settings = names.settings(kafka_bootstrap, clearbit.url, clearbit_api_key="sk_wrong_key")
    with running_stage(settings, expect_failure=True) as stage:
        stage.thread.join(30)
        assert not stage.thread.is_alive()
    assert len(stage.errors) == 1
    assert isinstance(stage.errors[0], ProviderAuthError)
    assert "sk_wrong" not in str(stage.errors[0])
    committed = committed_offsets(kafka_bootstrap, names.group, names.input, 3)
    assert all(offset < 0 for offset in committed.values())  # nothing committed
    assert read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: False,
                timeout=2) == []


def test_provider_outage_ends_in_retries_exhausted_dead_letters(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    emails = [f"error{i}@initech.example" for i in range(3)]  # always 500
    produce(kafka_bootstrap, names.input, [(b"k", identify(e, user_id="u")) for e in emails])
    settings = names.settings(kafka_bootstrap, clearbit.url, max_attempts=3,
                              breaker_threshold=100)
    with running_stage(settings):
        letters = read(kafka_bootstrap, [names.dlq], until=lambda m: len(m) >= 3, timeout=60)
    assert [headers_of(m)["__enrichment.errors.reason"] for m in letters] == \
        ["retries_exhausted"] * 3
    assert all(clearbit.stats()["by_email_count"][e] == 3 for e in emails)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_both_delivery_modes_enrich(kafka_bootstrap: str, names: Names,
                                    clearbit: ClearbitServer, delivery: str) -> None:
    produce(kafka_bootstrap, names.input, [
        (f"u{i % 7}".encode(), identify(person_email(i), user_id=f"u{i % 7}")) for i in range(50)])
    settings = names.settings(kafka_bootstrap, clearbit.url, delivery=delivery,
                              transactional_id=f"{names.group}-tx")
    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 50)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 30,
                 "offsets committed")
    assert count_of(out, names.output) == 50
