"""The conversions pipeline with in-memory stores and a loopback broker: every record it
writes to its repartition topics is fed back to it, as the real broker would."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processor.adapters.json_codec import JsonEvents
from processor.core.conversions.audiences import parse_audiences
from processor.core.conversions.matching import sha256_hex
from processor.core.records import Record
from processor.runtime.size_limits import TopicLimits
from processor.stages.conversions.pipeline import (
    ConversionOptions,
    ConversionPipeline,
    ConversionTopics,
)
from tests.conversion_events import AUDIENCES_YAML, DAY, ident, iso, page
from tests.fakes import ConversionRecorder, FakeClock, FakeSink, MemoryStores

EVENTS, IDENTIFIES = "segment.events", "identify.raw"
TOPICS = ConversionTopics(frozenset({EVENTS, IDENTIFIES}), "conv.by-anon", "conv.by-person",
                          "conv.outbox", "conv.dlq")
AUDIENCES = parse_audiences(AUDIENCES_YAML)


class Loop:
    """The pipeline, its sink and stores; ``settle`` delivers and feeds back until quiet."""

    def __init__(self, transactional: bool = False, settle_s: float = 30.0,
                 limits: TopicLimits | None = None) -> None:
        self.clock = FakeClock(wall=1_800_000_000.0)
        self.sink = FakeSink()
        self.sensor = ConversionRecorder()
        self.visitors = MemoryStores("visitors", "conv.anon-state")
        self.people = MemoryStores("people", "conv.person-state")
        self.transactional = transactional
        self.pipeline = ConversionPipeline(
            topics=TOPICS, audiences=AUDIENCES, decoder=JsonEvents(), sink=self.sink,
            visitor_stores=self.visitors, person_stores=self.people, sensor=self.sensor,
            clock=self.clock, limits=limits,
            options=ConversionOptions(click_ttl_ms=90 * DAY * 1000,
                                      settle_ms=int(settle_s * 1000), future_skew=300,
                                      region="US", transactional=transactional))
        self.offsets: dict[str, int] = {}
        self.fed = 0

    @property
    def now(self) -> float:
        return self.clock.time()

    def send(self, topic: str, event: dict[str, Any]) -> None:
        self._feed(topic, orjson.dumps(event), None)
        self.settle()

    def _feed(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        self.pipeline.handle([Record(topic, 0, offset, value, key=key,
                                     timestamp_ms=int(self.now * 1000))])

    def settle(self) -> None:
        """Deliver everything and feed repartition records back until nothing moves."""
        while True:
            if self.transactional:
                outputs, _ = self.pipeline.take_decided()
                produced = [(o.topic, o.key, o.value) for o in outputs]
                self.sink.produced += [(o.topic, o.key, o.value, o.headers) for o in outputs]
            else:
                self.sink.deliver()
                produced = [(t, k, v) for t, k, v, _ in self.sink.produced[self.fed:]]
            self.fed = len(self.sink.produced)
            internal = [p for p in produced if p[0] in (TOPICS.by_anon, TOPICS.by_person)]
            if not internal:
                self.pipeline.report()
                return
            for topic, key, value in internal:
                self._feed(topic, value, key)

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pipeline.pump()
        self.settle()

    def conversions(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, v, _ in self.sink.produced if t == TOPICS.output]


@pytest.mark.parametrize("transactional", [False, True], ids=["at-least-once", "exactly-once"])
def test_the_historical_click_reaches_the_conversion(transactional: bool) -> None:
    loop = Loop(transactional)
    loop.send(EVENTS, page("anon-1", "gclid=Cj0KCQ-AbC&fbclid=IwAR-xYz"))
    clicked_ms = int(loop.now * 1000)
    loop.later(2 * DAY)
    loop.send(IDENTIFIES, ident("user-1", "anon-1", email=" John.Smith+ads@Gmail.com "))
    loop.later(DAY)
    loop.send(IDENTIFIES, ident("user-1", lifecycle="MQL", mql_at=iso(loop.now - 60)))
    assert loop.conversions() == []  # waiting for the settle delay
    loop.later(31)
    (conversion,) = loop.conversions()
    assert conversion["audience"] == "mql_7d"
    assert conversion["person_key"] == "user-1"
    clicks = conversion["clicks"]
    assert clicks["google"]["value"] == "Cj0KCQ-AbC"
    assert clicks["fbc"]["value"] == f"fb.1.{clicked_ms}.IwAR-xYz"
    assert conversion["matching"]["meta"]["em"] == sha256_hex("john.smith+ads@gmail.com")
    assert conversion["matching"]["google"]["email_address"] == sha256_hex("johnsmith@gmail.com")
    raw = b"".join(v or b"" for _, _, v, _ in loop.sink.produced)
    raw += b"".join(v for s in loop.people.open.values() for v in s.data.values())
    assert b"smith" not in raw.lower()


def test_a_flip_flop_with_the_same_timestamp_is_one_conversion() -> None:
    loop = Loop()
    mql_at = iso(loop.now - 60)
    for lifecycle in ("MQL", "Lead", "MQL", "Lead", "MQL"):
        loop.send(IDENTIFIES, ident("u", lifecycle=lifecycle, mql_at=mql_at))
    loop.later(31)
    assert len(loop.conversions()) == 1
    loop.send(IDENTIFIES, ident("u", lifecycle="MQL", mql_at=iso(loop.now - 5)))
    loop.later(31)
    first, second = loop.conversions()
    assert first["conversion_id"] != second["conversion_id"]


def test_an_entry_older_than_the_bound_is_the_backfill_guard() -> None:
    loop = Loop()
    loop.send(IDENTIFIES, ident("u", lifecycle="MQL", mql_at=iso(loop.now - 8 * DAY)))
    loop.later(31)
    assert loop.conversions() == []
    assert loop.sensor.skips[("mql_7d", "stale_entry")] == 1


@pytest.mark.parametrize(("mql_at", "reason"), [
    (None, "no_timestamp"), ("next tuesday", "bad_timestamp"), ("2999-01-01T00:00:00Z",
                                                                "future_timestamp")])
def test_timestamps_that_cannot_enter_are_counted(mql_at: str | None, reason: str) -> None:
    loop = Loop()
    loop.send(IDENTIFIES, ident("u", lifecycle="MQL", mql_at=mql_at))
    loop.later(31)
    assert loop.conversions() == []
    assert loop.sensor.skips[("mql_7d", reason)] == 1


def test_an_anonymous_entry_moves_to_the_user_with_its_id() -> None:
    loop = Loop()
    mql_at = iso(loop.now - 60)
    loop.send(IDENTIFIES, ident(None, "anon-9", lifecycle="MQL", mql_at=mql_at))
    loop.later(31)
    (anonymous,) = loop.conversions()
    assert anonymous["person_key"] == "anon-9"
    loop.send(EVENTS, page("anon-9", "gclid=later", userId="user-9"))
    loop.send(IDENTIFIES, ident("user-9", "anon-9", lifecycle="MQL", mql_at=mql_at))
    loop.later(31)
    assert len(loop.conversions()) == 1  # the same entry, not a second conversion


def test_clicks_seen_after_the_entry_are_not_attached() -> None:
    loop = Loop()
    loop.send(IDENTIFIES, ident("u", "anon-2", lifecycle="MQL", mql_at=iso(loop.now - 60)))
    loop.send(EVENTS, page("anon-2", "gclid=after-entry", userId="u"))
    loop.later(31)
    (conversion,) = loop.conversions()
    assert "google" not in conversion["clicks"]


def test_unreadable_inputs_are_dead_letters_with_the_headers() -> None:
    loop = Loop()
    loop._feed(EVENTS, b"{not json", None)
    loop.send(IDENTIFIES, {"type": "identify", "traits": {}})  # nobody
    loop.settle()
    dead = [(v, dict(h or [])) for t, _, v, h in loop.sink.produced if t == TOPICS.dead_letter]
    assert [h["__conversions.errors.reason"] for _, h in dead] == [b"not_json",
                                                                   b"missing_identity"]
    assert dead[0][0] == b"{not json"


@pytest.mark.parametrize("transactional", [False, True], ids=["at-least-once", "exactly-once"])
def test_too_large_for_their_topics_records_are_dead_letters_and_the_rest_goes_on(
        transactional: bool) -> None:
    loop = Loop(transactional, limits=TopicLimits({TOPICS.by_anon: 2000,
                                                   TOPICS.dead_letter: 1500}))
    clicks = "&".join(f"{kind}={kind[0].upper() * 1000}" for kind in ("gclid", "fbclid",
                                                                        "msclkid"))
    loop.send(EVENTS, page("anon-big", clicks, at=loop.now))
    loop.send(EVENTS, page("anon-ok", "gclid=small", at=loop.now))
    letters = [(k, v, dict(h or [])) for t, k, v, h in loop.sink.produced
               if t == TOPICS.dead_letter]
    ((_, value, headers),) = letters
    # Its touch is too large for by-anon; the event itself, explained, for the dead letters.
    assert headers["__conversions.errors.reason"] == b"output_too_large"
    assert headers["__conversions.errors.omitted"] == b"value"
    assert value is None
    touches = [k for t, k, _, _ in loop.sink.produced if t == TOPICS.by_anon]
    assert touches == [b"anon-ok"]
    assert loop.sensor.events[("dead_lettered", "output_too_large")] == 1
    assert loop.sensor.trimmed == {"output_too_large": 1}
