"""The sender end to end: a real broker, the Meta- and Google-compatible servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.harness import caught_up, headers_of, produce, wait_for
from tests.senders import (
    HOUR,
    SenderNames,
    conversion,
    make_names,
    outbox_items,
    results,
    running_sender,
)


@pytest.fixture
def names(kafka_topics: Callable[..., str], unique_name: str, tmp_path: Path) -> SenderNames:
    return make_names(kafka_topics, unique_name, tmp_path)


def test_conversions_reach_both_platforms_once(kafka_bootstrap: str, names: SenderNames,
                                               meta: MetaServer, google: GoogleServer) -> None:
    records = [conversion(i) for i in range(20)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    with running_sender(names.settings(kafka_bootstrap, meta, google)):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 40)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 30,
                 "offsets committed")
    ids = {r["conversion_id"] for r in records}
    assert {e["event_id"] for e in meta.events()} == ids
    assert {e["transaction_id"] for e in google.events()} == ids
    assert found.statuses("meta") == {i: ["accepted"] for i in ids}
    assert found.statuses("google") == {i: ["accepted"] for i in ids}
    assert found.letters == []


def test_a_meta_event_too_old_never_enters_a_batch(kafka_bootstrap: str, names: SenderNames,
                                                   meta: MetaServer, google: GoogleServer
                                                   ) -> None:
    old = conversion(0, "meta_7d", entry_ts=int(time.time()) - 7 * 86_400 - HOUR)
    fresh = [conversion(i, "meta_7d") for i in range(1, 10)]
    produce(kafka_bootstrap, names.outbox, outbox_items([old, *fresh]))
    settings = names.settings(kafka_bootstrap, meta, google, linger=1.5)
    with running_sender(settings):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 10)
    # The rest went in one request, which Meta never refused for the 7-day rule.
    requests = meta.requests(api="events")
    assert [r["events"] for r in requests] == [9]
    assert all(r["status"] == 200 for r in requests)
    assert {e["event_id"] for e in meta.events()} == {r["conversion_id"] for r in fresh}
    skipped = [a for a in found.audit if a["status"] == "skipped"]
    assert [(a["conversion_id"], a["reason"]) for a in skipped] == [
        (old["conversion_id"], "meta_too_old")]
    assert found.letters == []


@pytest.mark.parametrize("destination", ["meta", "google"])
def test_one_invalid_event_in_64_is_bisected_out(kafka_bootstrap: str, names: SenderNames,
                                                 meta: MetaServer, google: GoogleServer,
                                                 destination: str) -> None:
    audience = "meta_7d" if destination == "meta" else "google_30d"
    records = [conversion(i, audience) for i in range(64)]
    bad = records[41]["conversion_id"]
    if destination == "meta":  # Meta refuses the whole request for one bad event
        meta.fail(400, code=100, error_subcode=2804001, event_ids=[bad])
        api, expected_reason = "events", "meta_100_2804001"
    else:  # so does Data Manager
        google.fail(400, reason="INVALID_SHA256_FORMAT", event_ids=[bad])
        api, expected_reason = "datamanager", "google_invalid_sha256_format"
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    settings = names.settings(kafka_bootstrap, meta, google, meta_batch_max=64,
                              google_batch_max=64, linger=2.0)
    with running_sender(settings):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 64)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 30,
                 "offsets committed")
    server = meta if destination == "meta" else google
    requests = server.requests(api=api)
    assert requests[0]["events"] == 64  # one batch to begin with
    assert len(requests) <= 1 + 2 * 6  # two halves per level, six levels down to one
    accepted = {e["event_id"] if destination == "meta" else e["transaction_id"]
                for e in server.events()}
    assert accepted == {r["conversion_id"] for r in records} - {bad}
    statuses = found.statuses(destination)
    assert statuses.pop(bad) == ["rejected"]
    assert set(map(tuple, statuses.values())) == {("accepted",)}
    assert found.reasons() == [expected_reason]
    (letter,) = found.letters
    headers = headers_of(letter)
    assert letter.value() == orjson.dumps(records[41])  # the record unchanged
    assert headers["__conversions.errors.destination"] == destination
    assert headers["__conversions.errors.platform_code"] == expected_reason
    assert headers["__connect.errors.topic"] == names.outbox


def test_google_ads_partial_failure_rejects_one_row_and_retries_another(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer, google: GoogleServer
) -> None:
    records = [conversion(i, "ads_30d") for i in range(10)]
    permanent, transient = records[3]["conversion_id"], records[7]["conversion_id"]
    google.fail(reason="INVALID_USER_IDENTIFIER", event_ids=[permanent])
    google.fail(reason="INTERNAL_ERROR", event_ids=[transient], times=2)
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    with running_sender(names.settings(kafka_bootstrap, meta, google, linger=1.5)):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 10)
    # The first request carried all ten; only the transient row was sent again, alone.
    assert [r["events"] for r in google.requests(api="ads")] == [10, 1, 1]
    assert {e["order_id"] for e in google.events(api="ads")} == {
        r["conversion_id"] for r in records} - {permanent}
    statuses = found.statuses("google")
    assert statuses.pop(permanent) == ["rejected"]
    assert set(map(tuple, statuses.values())) == {("accepted",)}
    assert found.reasons() == ["google_invalid_user_identifier"]


def test_what_the_platforms_already_have_counts_as_success(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer, google: GoogleServer,
        unique_name: str) -> None:
    records = [conversion(i, "ads_30d") for i in range(5)] + [
        conversion(i, "both_7d") for i in range(5, 10)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    with running_sender(names.settings(kafka_bootstrap, meta, google)):
        results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 15)
    # A replay from the start (another group): every conversion is sent again.
    again = names.settings(kafka_bootstrap, meta, google, group_id=f"{unique_name}-replay")
    with running_sender(again):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 30)
    ads = {r["conversion_id"] for r in records[:5]}
    statuses = found.statuses("google")
    assert {i: s for i, s in statuses.items() if i in ads} == {
        i: ["accepted", "duplicate"] for i in ads}  # ORDER_ID_ALREADY_IN_USE
    assert found.letters == []
    assert len(google.events()) == 10
    assert len(meta.events()) == 5
    reasons = {a["reason"] for a in found.audit if a["status"] == "duplicate"}
    assert reasons == {"google_order_id_already_in_use"}
