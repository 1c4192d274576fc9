"""The sender end to end: a real broker, the Meta- and Google-compatible servers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from processor.core.errors import DestinationRefusedError
from processor.devkit.conversion_samples import HOUR
from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.harness import caught_up, committed_offsets, headers_of, produce, sample, wait_for
from tests.senders import (
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
        # The dead letters are on a topic of their own: read until they are in too.
        found = results(kafka_bootstrap, names,
                        until=lambda r: len(r.audit) >= 64 and len(r.letters) >= 1)
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
        # The dead letters are on a topic of their own: read until they are in too.
        found = results(kafka_bootstrap, names,
                        until=lambda r: len(r.audit) >= 10 and len(r.letters) >= 1)
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


@pytest.mark.parametrize("destination", ["meta", "google"])
def test_a_refused_credential_stops_the_sender_and_commits_nothing_past_it(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer, google: GoogleServer,
        destination: str) -> None:
    audience = "meta_7d" if destination == "meta" else "google_30d"
    records = [conversion(i, audience) for i in range(30)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    wrong = ({"meta_access_token": "EAAB-wrong-token"} if destination == "meta"
             else {"google_refresh_token": "1//wrong-refresh-token"})
    settings = names.settings(kafka_bootstrap, meta, google, **wrong)
    with running_sender(settings, expect_failure=True) as sender:
        sender.thread.join(30)
        assert not sender.thread.is_alive()
    (error,) = sender.errors
    assert isinstance(error, DestinationRefusedError)
    assert error.exit_code == 3
    text = str(error)
    assert f"audience(s) {audience}" in text
    assert text.startswith(f"{destination} refused the sender")
    assert "wrong" not in text
    assert sample(sender.sensor, "conversions_destination_stopped",
                  destination=destination) == 1
    committed = committed_offsets(kafka_bootstrap, names.group, names.outbox, 3)
    assert all(offset < 0 for offset in committed.values())
    assert results(kafka_bootstrap, names, until=lambda r: False, timeout=2).audit == []
    # Fixed: everything is sent, once.
    with running_sender(names.settings(kafka_bootstrap, meta, google)):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 30, settle=1)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 30,
                 "offsets committed")
    ids = {r["conversion_id"] for r in records}
    assert found.statuses(destination) == {i: ["accepted"] for i in ids}
    events = meta.events() if destination == "meta" else google.events()
    assert len(events) == 30


def test_transient_errors_are_retried_and_dead_lettered_only_past_the_deadline(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer,
        google: GoogleServer) -> None:
    meta.fail(503, api="events", times=3)  # then fine
    google.fail(500, api="datamanager")  # never fine
    meta_records = [conversion(i, "meta_7d") for i in range(5)]
    google_records = [conversion(i, "google_30d", salt="g") for i in range(5)]
    produce(kafka_bootstrap, names.outbox, outbox_items(meta_records + google_records))
    settings = names.settings(kafka_bootstrap, meta, google, linger=1.0, retry_deadline=4.0,
                              breaker_threshold=100)
    started = time.monotonic()
    with running_sender(settings):
        # The dead letters are on a topic of their own: read until they are in too.
        found = results(kafka_bootstrap, names,
                        until=lambda r: len(r.audit) >= 10 and len(r.letters) >= 5)
    took = time.monotonic() - started
    assert found.statuses("meta") == {r["conversion_id"]: ["accepted"] for r in meta_records}
    assert found.statuses("google") == {r["conversion_id"]: ["rejected"]
                                        for r in google_records}
    assert found.reasons() == ["retries_exhausted"] * 5
    assert {headers_of(m)["__conversions.errors.platform_code"] for m in found.letters} == {
        "google_internal_error"}
    assert 3.5 < took < 30  # not before the deadline
    # Backoff with jitter: the gaps between Meta's attempts grow.
    times = [r["time"] for r in meta.requests(api="events")]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[2] > gaps[0]
    attempts = [r["time"] for r in google.requests(api="datamanager")]
    assert 3 <= len(attempts) <= 8


def test_google_waits_until_the_click_is_old_enough_and_meta_does_not(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer,
        google: GoogleServer) -> None:
    records = [conversion(i, click_age=0.0) for i in range(6)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    settings = names.settings(kafka_bootstrap, meta, google, google_click_min_age=12.0)
    with running_sender(settings):
        early = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 6, settle=1)
        assert {a["destination"] for a in early.audit} == {"meta"}
        assert google.events() == []
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 12)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.delayed, 3), 30,
                 "the delay topic committed")
    assert len(found.delayed) == 6
    for event in google.events():
        click = next(r for r in records if r["conversion_id"] == event["transaction_id"])
        clicked = click["clicks"]["google"]["observed_at_ms"] / 1000
        assert event["received_at"] >= clicked + 12.0
    statuses = found.statuses("google")
    assert statuses == {r["conversion_id"]: ["accepted"] for r in records}


def test_too_recent_for_google_is_sent_again_later_with_the_same_id(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer,
        google: GoogleServer) -> None:
    # Our record says the click is 7 hours old; Google knows it from a minute ago.
    record = conversion(1, "ads_30d", click_age=7 * HOUR, entry_ts=int(time.time()))
    google.register_click(record["clicks"]["google"]["value"], time.time() - 60)
    produce(kafka_bootstrap, names.outbox, outbox_items([record]))
    settings = names.settings(kafka_bootstrap, meta, google, too_recent_delay=2.0)
    with running_sender(settings):
        wait_for(lambda: any(r.get("rejected") for r in google.requests(api="ads")), 30,
                 "a first upload refused as too recent")
        google.advance_clock(6 * HOUR)
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 1)
    assert found.statuses("google") == {record["conversion_id"]: ["accepted"]}
    # Six hours on, the server's clock has expired our access token too: a 401, one
    # renewal, and the same upload again.
    uploads = google.requests(api="ads")
    assert [(u["status"], u.get("accepted"), u.get("rejected")) for u in uploads] == [
        (200, 0, 1), (401, None, None), (200, 1, 0)]
    assert len(google.requests(api="token")) == 2
    assert [e["order_id"] for e in google.events()] == [record["conversion_id"]]
    (delayed,) = found.delayed
    assert headers_of(delayed)["conversions.delays"] == "1"


def test_a_dry_run_sends_test_events_only(kafka_bootstrap: str, names: SenderNames,
                                          meta: MetaServer, google: GoogleServer) -> None:
    records = [conversion(i) for i in range(5)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    settings = names.settings(kafka_bootstrap, meta, google, dry_run=True,
                              meta_test_event_code="TEST4242")
    with running_sender(settings):
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 10)
    assert meta.events() == []
    assert len(meta.events(test=True)) == 5
    assert google.events() == []
    assert all(r["validate_only"] for r in google.requests(api="datamanager"))
    assert all(a["test"] and a["status"] == "accepted" for a in found.audit)


def test_exactly_once_writes_results_and_offsets_in_one_transaction(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer, google: GoogleServer
) -> None:
    records = [conversion(i, click_age=0.0 if i % 2 else 2 * 86_400) for i in range(20)]
    produce(kafka_bootstrap, names.outbox, outbox_items(records))
    settings = names.settings(kafka_bootstrap, meta, google, delivery="exactly-once",
                              transactional_id=f"{names.group}-tx", google_click_min_age=12.0)
    with running_sender(settings):
        found = results(kafka_bootstrap, names, timeout=90,
                        until=lambda r: len(r.audit) >= 40 and len(r.delayed) >= 10)
        # (The delay topic, written in transactions, ends in commit markers: its
        # committed offsets stop one short of its end.)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 30,
                 "offsets committed")
    ids = {r["conversion_id"] for r in records}
    assert found.statuses("meta") == {i: ["accepted"] for i in ids}
    assert found.statuses("google") == {i: ["accepted"] for i in ids}
    assert len(found.delayed) == 10


def _most_in_a_minute(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


def test_sixty_seconds_of_throttling_dead_letter_nothing_and_keep_to_the_limits(
        kafka_bootstrap: str, names: SenderNames, meta: MetaServer,
        google: GoogleServer) -> None:
    meta.throttle(60)  # code 17, as Graph sends it
    google.fail(429, reason="RESOURCE_EXHAUSTED", retry_after=7, seconds=60,
                api="datamanager")
    started = time.time()
    first = [conversion(i) for i in range(100)]
    produce(kafka_bootstrap, names.outbox, outbox_items(first))
    # A retry deadline far shorter than the throttling: throttling must never use it up.
    settings = names.settings(kafka_bootstrap, meta, google, meta_batch_max=20,
                              google_batch_max=20, meta_rate_limit_per_minute=60,
                              google_rate_limit_per_minute=60, retry_deadline=10.0)
    with running_sender(settings) as sender:
        time.sleep(30)
        later = [conversion(i) for i in range(100, 200)]
        produce(kafka_bootstrap, names.outbox, outbox_items(later))
        found = results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 400,
                        timeout=120)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 30,
                 "offsets committed")
        throttled = sample(sender.sensor, "conversions_send_retries_total",
                           destination="meta", reason="throttled")
    ids = {r["conversion_id"] for r in first + later}
    assert found.letters == []
    assert found.statuses("meta") == {i: ["accepted"] for i in ids}
    assert found.statuses("google") == {i: ["accepted"] for i in ids}
    assert len(meta.events()) == len(google.events()) == 200
    done = max(a["sent_at_ms"] for a in found.audit) / 1000
    # Everything soon after the throttling ended: the last hold was 30 s at most.
    assert done - started < 60 + 45, done - started
    for server, api, most in ((meta, "events", 12), (google, "datamanager", 12)):
        log = server.requests(api=api)
        during = [r for r in log if r["time"] < started + 60]
        print(f"[throttle] {api}: {len(during)} requests in the 60 s of throttling, "
              f"{len(log)} in all, at most {_most_in_a_minute([r['time'] for r in log])} "
              f"in a minute; everything accepted {done - started - 60:.1f}s after it ended")
        # While throttled the sender backs off and probes one request at a time...
        assert 3 <= len(during) <= most, (api, len(during))
        assert all(r["status"] in (400, 429) for r in during)
        # ... and never goes over its own limit (60 a minute) in any minute.
        assert _most_in_a_minute([r["time"] for r in log]) <= 61, api
    assert throttled >= 3
