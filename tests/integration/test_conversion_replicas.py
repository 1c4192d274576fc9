"""The conversions stage's state on the real broker, when its disk or its partitions move:
a restart on an empty disk, and a second replica joining and leaving the group."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processor.core.conversions.entries import conversion_id
from processor.entrypoints.conversion_settings import ConversionSettings
from tests.conversion_events import AUDIENCE, Population, ident, iso, page
from tests.conversion_harness import (
    ConversionNames,
    RunningConversions,
    audit_conversions,
    conversions_on,
    make_names,
    running_conversions,
    wait_for_conversions,
)
from tests.harness import Trickle, left_to_read, produce, sample, wait_for


@pytest.fixture
def conv(kafka_topics: Callable[..., str], unique_name: str, tmp_path: Path) -> ConversionNames:
    return make_names(kafka_topics, unique_name, tmp_path)


def consumed(topics: ConversionNames) -> list[str]:
    """Every topic the stage's group reads."""
    return [topics.events, topics.identifies, f"{topics.prefix}.by-anon",
            f"{topics.prefix}.by-person"]


def restored_by(stage: RunningConversions) -> float:
    """Changelog records the stage applied to its stores, both stores together."""
    return sum(sample(stage.sensor, "conversions_restored_records_total", store=store)
               for store in ("visitors", "people"))


def settled(bootstrap: str, names: ConversionNames) -> bool:
    return left_to_read(bootstrap, names.group, consumed(names)) == 0


def test_a_restart_on_an_empty_disk_restores_memberships_and_clicks(
        kafka_bootstrap: str, conv: ConversionNames, tmp_path: Path) -> None:
    now = time.time()
    entered_at = int(now) - 600
    state = tmp_path / "state"
    produce(kafka_bootstrap, conv.identifies, [
        (b"entered", ident("entered", lifecycle="MQL", mql_at=iso(entered_at)))])
    produce(kafka_bootstrap, conv.events, [
        # Captured, never linked before the wipe: only the visitor store knows it.
        (b"a-unlinked", page("a-unlinked", "gclid=G-unlinked", at=now - 3000)),
        # Captured and linked before the wipe: the person store knows it.
        (b"a-linked", page("a-linked", "gclid=G-linked", at=now - 3000)),
        (b"a-linked", page("a-linked", "x=1", at=now - 2900, userId="linked"))])
    with running_conversions(conv.settings(kafka_bootstrap, state)) as running:
        (first,) = wait_for_conversions(kafka_bootstrap, conv, 1)
        wait_for(lambda: sample(running.sensor, "conversions_identity_links_total") >= 1, 30,
                 "the link")
        wait_for(lambda: settled(kafka_bootstrap, conv), 30, "every input committed")
    shutil.rmtree(state)  # an empty disk: the changelogs are all there is

    with running_conversions(conv.settings(kafka_bootstrap, state)) as running:
        produce(kafka_bootstrap, conv.identifies, [
            (b"entered", ident("entered", lifecycle="MQL", mql_at=iso(entered_at)))])
        produce(kafka_bootstrap, conv.events, [
            (b"a-unlinked", page("a-unlinked", "x=2", at=now - 120, userId="unlinked"))])
        wait_for(lambda: sample(running.sensor, "conversions_identity_links_total") >= 1, 30,
                 "the link after the wipe")
        produce(kafka_bootstrap, conv.identifies, [
            (b"unlinked", ident("unlinked", lifecycle="MQL", mql_at=iso(now - 60))),
            (b"linked", ident("linked", lifecycle="MQL", mql_at=iso(now - 60)))])
        conversions = wait_for_conversions(kafka_bootstrap, conv, 3)
        wait_for(lambda: sample(running.sensor, "conversions_skipped_total", audience=AUDIENCE,
                                reason="already_entered") >= 1, 20, "the identify again")
        time.sleep(2)  # past the settle delay: a second conversion would be out by now
        restored = restored_by(running)
    assert restored > 0  # the second run had only the changelogs to go by
    by_person = {c["person_key"]: c for c in conversions_on(kafka_bootstrap, conv)}
    assert len(conversions_on(kafka_bootstrap, conv)) == 3
    assert by_person["entered"]["conversion_id"] == first["conversion_id"] == conversion_id(
        AUDIENCE, "entered", entered_at)
    assert by_person["unlinked"]["clicks"]["google"]["value"] == "G-unlinked"
    assert by_person["linked"]["clicks"]["google"]["value"] == "G-linked"
    assert {c["conversion_id"] for c in conversions} == {
        c["conversion_id"] for c in by_person.values()}


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_second_replica_joining_and_leaving_moves_state_with_its_partitions(
        kafka_bootstrap: str, conv: ConversionNames, tmp_path: Path, delivery: str) -> None:
    population = Population(entrants=600, others=150, now=time.time())
    exactly_once = delivery == "exactly-once"
    trickle = Trickle(kafka_bootstrap, {conv.events: population.pages(),
                                        conv.identifies: population.identifies()},
                      seconds=20)

    def settings(replica: str) -> ConversionSettings:
        return conv.settings(kafka_bootstrap, tmp_path / replica, delivery=delivery,
                             transactional_id=f"{conv.group}-{replica}")

    with running_conversions(settings("a")) as first:
        trickle.start()
        time.sleep(4)
        with running_conversions(settings("b")) as second:
            wait_for(lambda: sample(second.sensor, "conversions_records_consumed_total") > 0,
                     30, "the second replica to take partitions and read them")
            time.sleep(6)
            joined = sample(second.sensor, "conversions_records_consumed_total")
            moved = restored_by(second)
        trickle.finish()
        wait_for(lambda: settled(kafka_bootstrap, conv), 120, "the group to reach the end")
        # The last entries wait out their settle delay after the group caught up.
        wait_for(lambda: not audit_conversions(kafka_bootstrap, conv, population,
                                               read_committed=exactly_once).missing,
                 30, "every entry's conversion")
        time.sleep(2)  # anything written twice would be out by now
        taken_back = restored_by(first)
    result = audit_conversions(kafka_bootstrap, conv, population, read_committed=exactly_once)
    print(result.line(f"replica b joins and leaves, {delivery} (b read {joined:.0f} records "
                      f"and restored {moved:.0f}; a restored {taken_back:.0f})"))
    assert result.missing == []
    assert result.unexpected == []
    assert result.foreign_clicks == 0
    if exactly_once:
        assert result.duplicates == 0
