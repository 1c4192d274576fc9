"""The conversions stage on the real broker: historical clicks, entries, replays, restores."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processor.core.conversions.matching import sha256_hex
from processor.core.errors import ConfigError
from tests.conversion_events import DAY, ident, iso, page
from tests.conversion_harness import (
    ConversionNames,
    conversions_on,
    make_names,
    running_conversions,
    wait_for_conversions,
)
from tests.harness import produce, sample, wait_for

GOLDEN_EMAIL = "John_Smith@gmail.com"  # Meta's example: its SHA-256 is below
GOLDEN_META_EM = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


@pytest.fixture
def conv(kafka_topics: Callable[..., str], unique_name: str, tmp_path: Path) -> ConversionNames:
    return make_names(kafka_topics, unique_name, tmp_path)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_the_historical_click_makes_one_conversion_with_both_ids_and_the_golden_hashes(
        kafka_bootstrap: str, conv: ConversionNames, tmp_path: Path, delivery: str) -> None:
    now = time.time()
    clicked = int(now) - 3 * DAY
    produce(kafka_bootstrap, conv.events, [
        (b"anon-1", page("anon-1", "gclid=Cj0KCQiA-AbC_123&fbclid=IwAR2xYz-Q", at=clicked))])
    produce(kafka_bootstrap, conv.identifies, [
        (b"u-1", ident("u-1", "anon-1", at=now - DAY, email=GOLDEN_EMAIL,
                       phone="(650) 555-1212"))])
    settings = conv.settings(kafka_bootstrap, tmp_path / "state", delivery=delivery)
    with running_conversions(settings) as running:
        wait_for(lambda: sample(running.sensor, "conversions_identity_links_total") >= 1, 30,
                 "the link")
        produce(kafka_bootstrap, conv.identifies, [
            (b"u-1", ident("u-1", lifecycle="MQL", mql_at=iso(now - 120)))])
        (conversion,) = wait_for_conversions(kafka_bootstrap, conv, 1)
        time.sleep(2)  # nothing more comes
        assert len(conversions_on(kafka_bootstrap, conv)) == 1
    assert conversion["person_key"] == "u-1"
    clicks = conversion["clicks"]
    assert isinstance(clicks, dict)
    assert clicks["google"]["type"] == "gclid"
    assert clicks["google"]["value"] == "Cj0KCQiA-AbC_123"
    assert clicks["fbc"]["value"] == f"fb.1.{int(clicked) * 1000}.IwAR2xYz-Q"
    matching = conversion["matching"]
    assert isinstance(matching, dict)
    assert matching["meta"]["em"] == GOLDEN_META_EM
    assert matching["meta"]["ph"] == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
    assert matching["google"]["email_address"] == sha256_hex("john_smith@gmail.com")
    assert matching["google"]["phone_number"] == sha256_hex("+16505551212")


def test_backfills_flip_flops_and_new_timestamps(kafka_bootstrap: str, conv: ConversionNames,
                                                  tmp_path: Path) -> None:
    now = time.time()
    same = iso(now - 60)
    produce(kafka_bootstrap, conv.identifies, [
        (b"old", ident("old", lifecycle="MQL", mql_at=iso(now - 30 * DAY))),  # backfill
        *((b"flip", ident("flip", lifecycle=s, mql_at=same))
          for s in ("MQL", "Lead", "MQL", "Lead", "MQL")),
    ])
    with running_conversions(conv.settings(kafka_bootstrap, tmp_path / "s")) as running:
        (first,) = wait_for_conversions(kafka_bootstrap, conv, 1)
        assert first["person_key"] == "flip"
        wait_for(lambda: sample(running.sensor, "conversions_skipped_total",
                                audience="mql_7d", reason="stale_entry") == 1, 20, "the guard")
        produce(kafka_bootstrap, conv.identifies, [
            (b"flip", ident("flip", lifecycle="MQL", mql_at=iso(now - 5)))])
        # At-least-once may repeat a conversion on the topic, never with another id.
        wait_for(lambda: len({c["conversion_id"] for c in conversions_on(kafka_bootstrap, conv)})
                 == 2, 60, "a second, different conversion")
        time.sleep(2)
    found = conversions_on(kafka_bootstrap, conv)
    assert {c["person_key"] for c in found} == {"flip"}
    assert len({c["conversion_id"] for c in found}) == 2


def test_a_replay_from_the_beginning_on_an_empty_disk_makes_no_new_conversion(
        kafka_bootstrap: str, conv: ConversionNames, tmp_path: Path) -> None:
    now = time.time()
    produce(kafka_bootstrap, conv.identifies, [
        (f"p{i}".encode(), ident(f"p{i}", lifecycle="MQL", mql_at=iso(now - 60 - i)))
        for i in range(20)])
    state = tmp_path / "state"
    with running_conversions(conv.settings(kafka_bootstrap, state)):
        first = wait_for_conversions(kafka_bootstrap, conv, 20)
    ids = {c["conversion_id"] for c in first}
    assert len(ids) == 20
    shutil.rmtree(state)  # an empty disk: the changelogs are all there is
    replay = conv.settings(kafka_bootstrap, state, group_id=f"{conv.group}-replay")
    with running_conversions(replay) as running:
        wait_for(lambda: sample(running.sensor, "conversions_records_consumed_total") >= 20,
                 30, "the replay")
        time.sleep(3)  # longer than the settle delay
    again = conversions_on(kafka_bootstrap, conv)
    assert {c["conversion_id"] for c in again} == ids
    assert len(again) == 20


def test_a_late_link_within_the_settle_delay_is_attached_and_after_it_is_counted(
        kafka_bootstrap: str, conv: ConversionNames, tmp_path: Path) -> None:
    now = time.time()
    produce(kafka_bootstrap, conv.events, [
        (b"a1", page("a1", "gclid=early-link", at=now - 600)),
        (b"a2", page("a2", "gclid=late-link", at=now - 600))])
    settings = conv.settings(kafka_bootstrap, tmp_path / "s", settle_delay=4.0)
    with running_conversions(settings) as running:
        produce(kafka_bootstrap, conv.identifies, [
            (b"u1", ident("u1", lifecycle="MQL", mql_at=iso(now - 60))),
            (b"u2", ident("u2", lifecycle="MQL", mql_at=iso(now - 60)))])
        produce(kafka_bootstrap, conv.events, [(b"a1", page("a1", "x=1", userId="u1"))])
        wait_for_conversions(kafka_bootstrap, conv, 2, timeout=30)
        produce(kafka_bootstrap, conv.events, [(b"a2", page("a2", "x=1", userId="u2"))])
        wait_for(lambda: sample(running.sensor, "conversions_skipped_total", audience="",
                                reason="late_click") >= 1, 20, "the late click")
    by_person = {c["person_key"]: c for c in conversions_on(kafka_bootstrap, conv)}
    assert by_person["u1"]["clicks"]["google"]["value"] == "early-link"
    assert "google" not in by_person["u2"]["clicks"]
    assert len(by_person) == 2


def test_start_up_refuses_missing_topics_and_mismatched_changelogs(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path) -> None:
    names = make_names(kafka_topics, unique_name, tmp_path)
    broken = names.settings(kafka_bootstrap, tmp_path / "s", topic_prefix=f"{unique_name}-x")
    with pytest.raises(ConfigError, match="does not exist"), running_conversions(broken):
        pass
    kafka_topics("y.by-anon", 3)
    kafka_topics("y.by-person", 3)
    kafka_topics("y.anon-state", 2, config={"cleanup.policy": "compact"})
    kafka_topics("y.person-state", 3)
    mismatched = names.settings(kafka_bootstrap, tmp_path / "s", topic_prefix=f"{unique_name}-y",
                                output_topic=names.output, dlq_topic=names.dlq)
    with pytest.raises(ConfigError) as refused, running_conversions(mismatched):
        pass
    assert "has 2 partitions" in str(refused.value)
    assert "must be compact" in str(refused.value)
