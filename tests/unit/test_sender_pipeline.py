"""The sender's pipeline with hand-written fakes: no broker, no HTTP, no thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from processor.core.conversions.audit import Status
from processor.core.conversions.sending import Destination
from processor.core.errors import DestinationRefusedError
from processor.core.records import Headers, Record
from processor.stages.sender.batches import Batch, Batcher
from processor.stages.sender.pipeline import SenderOptions, SenderPipeline, SenderTopics
from processor.stages.sender.pool import Result
from tests.fakes import FakeClock, FakeSink
from tests.senders import conversion

TOPICS = SenderTopics("outbox", "delayed", "sent", "dlq")
BOTH = frozenset(Destination)
Answer = Callable[[Batch], list[Result]]


def accept(batch: Batch) -> list[Result]:
    return [Result(i, Status.ACCEPTED, ref="ref-1") for i in batch.items]


class FakePool:
    """Answers each submitted batch with ``answer`` (None: keeps it in flight)."""

    def __init__(self, answer: Answer | None = accept) -> None:
        self.answer = answer
        self.submitted: list[Batch] = []
        self.completed: list[Result] = []
        self.refusal: tuple[Destination, DestinationRefusedError] | None = None

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def submit(self, batch: Batch) -> None:
        self.submitted.append(batch)
        if self.answer is not None:
            self.completed += self.answer(batch)

    def take_completed(self) -> list[Result]:
        taken, self.completed = self.completed, []
        return taken

    @property
    def has_completed(self) -> bool:
        return bool(self.completed)


class Gate:
    def __init__(self) -> None:
        self.held: set[tuple[str, int]] = set()

    def hold(self, tps: list[tuple[str, int]]) -> None:
        self.held |= set(tps)

    def release(self, tps: list[tuple[str, int]]) -> None:
        self.held -= set(tps)


class Sensor:
    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}

    def __getattr__(self, name: str) -> Callable[..., None]:
        def hook(*args: Any, **kwargs: Any) -> None:
            self.calls.setdefault(name, []).append(args)
        return hook


class Fixture:
    def __init__(self, pool: FakePool | None = None, transactional: bool = False,
                 destinations: frozenset[Destination] = BOTH, **options: Any) -> None:
        self.clock = FakeClock(wall=time.time())
        self.sink = FakeSink()
        self.pool = pool or FakePool()
        self.gate = Gate()
        self.sensor = Sensor()
        self.pipeline = SenderPipeline(
            topics=TOPICS, options=SenderOptions(destinations=destinations,
                                                 missing={Destination.GOOGLE:
                                                          "GOOGLE_OAUTH_CLIENT_ID"},
                                                 transactional=transactional, **options),
            pool=self.pool,  # type: ignore[arg-type]
            batcher=Batcher({d: 500 for d in Destination}, 1.0, self.clock),
            sink=self.sink, gate=self.gate, sensor=self.sensor,  # type: ignore[arg-type]
            clock=self.clock)
        self.offset = 0

    def feed(self, *values: Any, topic: str = "outbox", headers: Headers | None = None
             ) -> None:
        records = []
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            records.append(Record(topic, 0, self.offset, raw, b"key", headers,
                                  timestamp_ms=1234))
            self.offset += 1
        self.pipeline.handle(records)

    def turn(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        self.pipeline.pump()

    def on(self, topic: str) -> list[tuple[bytes | None, Any, dict[str, Any]]]:
        return self.sink.on(topic)


def test_a_slot_is_done_only_when_every_result_is_confirmed() -> None:
    f = Fixture()
    record = conversion(1)
    f.feed(record)
    f.turn()  # the linger passes: both batches go, and are answered
    assert [b.account.destination for b in f.pool.submitted] == ["meta", "google"]
    f.turn(0)
    audits = [v for _, v, _ in f.on("sent")]
    assert [(a["destination"], a["status"]) for a in audits] == [
        ("meta", "accepted"), ("google", "accepted")]
    assert [k for k, _, _ in f.on("sent")] == [f"meta:{record['conversion_id']}".encode(),
                                                f"google:{record['conversion_id']}".encode()]
    assert f.pipeline.advance() == {}  # produced, not yet confirmed
    f.sink.deliver()
    assert f.pipeline.advance() == {("outbox", 0): 1}


def test_a_rejection_is_audited_and_dead_lettered_with_the_platforms_code() -> None:
    def reject(batch: Batch) -> list[Result]:
        return [Result(i, Status.REJECTED, "meta_100_2804001", "T") for i in batch.items]

    f = Fixture(FakePool(reject))
    record = conversion(1, "meta_7d")
    f.feed(record)
    f.turn()
    f.turn(0)
    ((_, audit, _),) = f.on("sent")
    assert (audit["status"], audit["reason"], audit["platform_ref"]) == (
        "rejected", "meta_100_2804001", "T")
    ((key, value, headers),) = f.on("dlq")
    assert (key, value) == (b"key", record)
    assert headers["__conversions.errors.reason"] == b"meta_100_2804001"
    assert headers["__conversions.errors.destination"] == b"meta"
    assert headers["__conversions.errors.audience"] == b"meta_7d"
    assert headers["__connect.errors.topic"] == b"outbox"


def test_too_old_for_meta_and_nothing_to_match_are_skipped_without_a_request() -> None:
    f = Fixture()
    f.feed(conversion(1, "meta_7d", entry_ts=int(f.clock.time()) - 7 * 86_400),
           conversion(2, "google_30d", google_click=None, keys=False))
    f.turn()
    assert f.pool.submitted == []
    assert sorted((a["destination"], a["status"], a["reason"]) for _, a, _ in f.on("sent")) == [
        ("google", "skipped", "no_identifiers"), ("meta", "skipped", "meta_too_old")]
    f.sink.deliver()
    assert f.pipeline.advance() == {("outbox", 0): 2}


def test_google_with_a_young_click_goes_to_the_delay_topic_and_meta_is_sent() -> None:
    f = Fixture(google_min_age=6 * 3600)
    record = conversion(1, click_age=600)
    f.feed(record)
    f.turn()
    assert [b.account.destination for b in f.pool.submitted] == ["meta"]
    ((key, value, headers),) = f.on("delayed")
    assert (key, value) == (b"key", record)
    observed = record["clicks"]["google"]["observed_at_ms"]
    assert int(headers["conversions.not_before"]) == observed + 6 * 3600_000
    assert headers["conversions.delays"] == b"1"
    assert headers["conversions.emitted_at"] == b"1234"
    f.turn(0)
    f.sink.deliver()
    assert f.pipeline.advance() == {("outbox", 0): 1}


def delayed(record: dict[str, Any], not_before_ms: int, delays: int = 1) -> Headers:
    return [("conversions.not_before", str(not_before_ms).encode()),
            ("conversions.delays", str(delays).encode()),
            ("conversions.emitted_at", b"99")]


def test_the_delay_topic_waits_in_order_with_its_partition_held() -> None:
    f = Fixture()
    now_ms = int(f.clock.time() * 1000)
    first, second = conversion(1), conversion(2)
    f.feed(first, topic="delayed", headers=delayed(first, now_ms + 10_000))
    f.feed(second, topic="delayed", headers=delayed(second, now_ms))  # due, but behind
    assert f.gate.held == {("delayed", 0)}
    assert f.pipeline.unfinished() == 0  # waiting is not work under way
    assert f.pipeline.outstanding() == 2
    f.turn(5)
    assert f.pool.submitted == []
    f.turn(6)
    f.turn(1)
    assert f.gate.held == set()
    (batch,) = f.pool.submitted
    assert [i.conversion.conversion_id for i in batch.items] == [
        first["conversion_id"], second["conversion_id"]]
    assert {a["destination"] for _, a, _ in f.on("sent")} == {"google"}  # Meta was sent before
    assert {a["emitted_at_ms"] for _, a, _ in f.on("sent")} == {99}
    f.sink.deliver()
    assert f.pipeline.advance() == {("delayed", 0): 2}


def test_too_recent_goes_back_to_the_delay_topic_until_the_limit() -> None:
    def too_recent(batch: Batch) -> list[Result]:
        return [Result(i, None, "google_too_recent_event") for i in batch.items]

    f = Fixture(FakePool(too_recent), too_recent_delay=3600, max_delays=3)
    now_ms = int(f.clock.time() * 1000)
    record = conversion(1, "ads_30d")
    f.feed(record, topic="delayed", headers=delayed(record, now_ms, delays=2))
    f.turn()
    f.turn(0)
    ((_, _, headers),) = f.on("delayed")
    assert headers["conversions.delays"] == b"3"
    assert int(headers["conversions.not_before"]) >= now_ms + 3600_000
    f.feed(record, topic="delayed", headers=delayed(record, now_ms, delays=3))
    f.turn()
    f.turn(0)
    ((_, audit, _),) = f.on("sent")
    assert (audit["status"], audit["reason"]) == ("rejected", "google_too_recent_event")
    ((_, _, letter),) = f.on("dlq")
    assert "conversions.not_before" not in letter  # a replay sends it anew


@pytest.mark.parametrize("value", [b"{not json", orjson.dumps({"v": 1})])
def test_what_is_not_a_conversion_is_dead_lettered(value: bytes) -> None:
    f = Fixture()
    f.feed(value)
    ((_, raw, headers),) = f.on("dlq")
    assert raw == value or raw == orjson.loads(value)
    assert headers["__conversions.errors.reason"] == b"unreadable_conversion"
    assert f.on("sent") == []


def test_a_destination_without_credentials_stops_naming_the_audience() -> None:
    f = Fixture(destinations=frozenset({Destination.META}))
    f.feed(conversion(1, "google_30d"))
    assert isinstance(f.pipeline.fatal, DestinationRefusedError)
    assert "audience 'google_30d' sends to google, but GOOGLE_OAUTH_CLIENT_ID" in str(
        f.pipeline.fatal)
    f.sink.deliver()
    assert f.pipeline.advance() == {}  # nothing from it on is committed


def test_a_refusal_in_the_pool_stops_the_stage() -> None:
    f = Fixture(FakePool(None))
    f.feed(conversion(1, "meta_7d"))
    f.pool.refusal = (Destination.META, DestinationRefusedError("meta refused"))
    f.turn()
    assert f.pipeline.fatal is f.pool.refusal[1]
    assert f.sensor.calls["stopped"] == [("meta",)]


def test_transactional_results_go_with_their_offsets() -> None:
    f = Fixture(transactional=True)
    f.feed(conversion(1), conversion(2, "meta_7d"))
    assert f.pipeline.take_decided() == ([], {})
    f.turn()
    f.turn(0)
    outputs, positions = f.pipeline.take_decided()
    assert positions == {("outbox", 0): 2}
    assert sorted(o.topic for o in outputs) == ["sent", "sent", "sent"]
    assert f.sink.produced == []  # the loop produces them, in its transaction


def test_results_for_a_dropped_partition_are_forgotten() -> None:
    pool = FakePool(None)
    f = Fixture(pool)
    f.feed(conversion(1, "meta_7d"))
    f.turn()
    f.pipeline.drop([("outbox", 0)])
    pool.completed = accept(pool.submitted[0])
    f.turn()
    assert f.on("sent") == []
    assert f.pipeline.outstanding() == 0


def test_results_are_counted_per_destination_audience_and_status() -> None:
    f = Fixture()
    f.feed(conversion(1), conversion(2, "meta_7d", entry_ts=int(f.clock.time()) - 8 * 86_400))
    f.turn()
    f.turn(0)
    f.pipeline.report()
    (sent,) = f.sensor.calls["sent"]
    assert sent[0] == {("meta", "both_7d", "accepted"): 1, ("google", "both_7d", "accepted"): 1,
                       ("meta", "meta_7d", "skipped"): 1}
    (keys,) = f.sensor.calls["match_keys"]
    assert keys[0][("meta", "em")] == 1
    assert keys[0][("google", "gclid")] == 1


def test_a_delay_topic_record_is_sent_to_google_only() -> None:
    f = Fixture()
    now_ms = int(f.clock.time() * 1000)
    both, meta_only = conversion(1), conversion(2, "meta_7d")
    f.feed(both, topic="delayed", headers=delayed(both, now_ms))
    f.feed(meta_only, topic="delayed", headers=delayed(meta_only, now_ms))
    f.turn()
    assert [b.account.destination for b in f.pool.submitted] == ["google"]
    f.turn(0)
    f.sink.deliver()
    assert f.pipeline.advance() == {("delayed", 0): 2}
