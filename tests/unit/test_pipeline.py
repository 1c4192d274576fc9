"""The pipeline with hand-written fakes: what goes where, single-flight, order, commits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processor.adapters.json_codec import JsonCodec
from processor.core.cache import TTLCache
from processor.core.enrichment.answers import Found, LookupResult, NotFound, Rejected, Remembered
from processor.core.errors import ProviderAuthError, RetriesExhaustedError
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.pipeline import Pipeline, Topics
from tests.fakes import FakeClock, FakeLookups, FakeSink, RecordingSensor, identify, record

TOPICS = Topics("identify.raw", "identify.enriched", "identify.dlq")
PERSON = {"name": {"givenName": "Ada", "familyName": "Lovelace"}, "bio": None}
COMPANY = {"name": "Analytical Engines", "category": {"subIndustry": "Computing"}}


class Harness:
    def __init__(self, transactional: bool = False, max_entries: int = 100) -> None:
        self.sink = FakeSink()
        self.sensor = RecordingSensor()
        self.clock = FakeClock()
        self.lookups = FakeLookups()
        self.submitted = self.lookups.submitted
        self.pipeline = Pipeline(
            topics=TOPICS, codec=JsonCodec(), sink=self.sink, lookups=self.lookups,
            sensor=self.sensor, clock=self.clock,
            memory=LookupCache(cache=TTLCache[Remembered](max_entries, self.clock),
                               codec=JsonCodec(), clock=self.clock, found_ttl=3600,
                                not_found_ttl=60),
            transactional=transactional,
        )

    def feed(self, *records: Any) -> None:
        self.pipeline.handle(list(records))

    def answer(self, email: str, result: LookupResult) -> None:
        self.pipeline.on_lookups([(email, result)])

    def outputs(self) -> list[tuple[bytes | None, Any, dict[str, Any]]]:
        return self.sink.on(TOPICS.output)

    def dead_letters(self) -> list[tuple[bytes | None, Any, dict[str, Any]]]:
        return self.sink.on(TOPICS.dead_letter)

    def counts(self) -> dict[tuple[str, str], int]:
        self.pipeline.report()
        return dict(self.sensor.events)


def test_enriches_one_event_end_to_end() -> None:
    h = Harness()
    h.feed(record(identify("Ada@Example.com", anonymousId="anon-1"), offset=0))
    assert h.submitted == ["ada@example.com"]
    assert h.outputs() == []
    h.answer("ada@example.com", Found(PERSON, COMPANY))
    ((key, event, _),) = h.outputs()
    assert key == b"user-1"
    assert event["type"] == "identify"
    assert event["userId"] == "user-1"
    assert event["anonymousId"] == "anon-1"
    assert event["messageId"].startswith("clearbit-")
    assert event["integrations"] == {"Clearbit Enrichment": False}
    assert event["traits"] == {
        "email": "ada@example.com",
        "clearbit_person_name_given_name": "Ada",
        "clearbit_person_name_family_name": "Lovelace",
        "clearbit_company_name": "Analytical Engines",
        "clearbit_company_category_sub_industry": "Computing",
    }
    assert event["timestamp"].endswith("Z")
    # Committable only once the broker confirmed the output.
    assert h.pipeline.advance() == {}
    h.sink.deliver()
    assert h.pipeline.advance() == {("identify.raw", 0): 1}
    assert h.counts() == {("enriched", ""): 1}


def test_one_request_per_email_however_many_arrive_together() -> None:
    h = Harness()
    h.feed(*[record(identify("Same@Example.com", userId=f"u{i}"), offset=i) for i in range(1000)])
    assert h.submitted == ["same@example.com"]
    h.answer("same@example.com", Found(PERSON, None))
    assert len(h.outputs()) == 1000
    assert h.sensor.cache_counts == {"hit": 0, "miss": 1, "coalesced": 999}
    # Later arrivals are served from the cache.
    h.feed(record(identify("same@example.com"), offset=1000))
    assert h.submitted == ["same@example.com"]
    assert len(h.outputs()) == 1001
    assert h.sensor.cache_counts["hit"] == 1


def test_cache_expiry_triggers_a_new_lookup() -> None:
    h = Harness()
    h.feed(record(identify(), offset=0))
    h.answer("ada@example.com", NotFound())
    h.feed(record(identify(), offset=1))
    assert h.submitted == ["ada@example.com"]
    h.clock.advance(61)  # the not-found TTL
    h.feed(record(identify(), offset=2))
    assert h.submitted == ["ada@example.com", "ada@example.com"]


def test_not_found_and_empty_bodies_are_counted_skips() -> None:
    h = Harness()
    h.feed(record(identify("a@example.com"), offset=0), record(identify("b@example.com"), offset=1))
    h.answer("a@example.com", NotFound())
    h.answer("b@example.com", Found(None, None))
    assert h.outputs() == []
    assert h.dead_letters() == []
    assert h.counts() == {("skipped", "not_found"): 2}
    assert h.pipeline.advance() == {("identify.raw", 0): 2}


def test_skips_need_no_lookup_and_commit_at_once() -> None:
    h = Harness()
    h.feed(
        record({"type": "track"}, offset=0),
        record(identify(None), offset=1),
        record(identify(integrations={"Clearbit": False}), offset=2),
        record(None, offset=3),
    )
    assert h.submitted == []
    assert h.counts() == {("skipped", "not_identify"): 1, ("skipped", "no_email"): 1,
                          ("skipped", "integration_disabled"): 1, ("skipped", "tombstone"): 1}
    assert h.pipeline.advance() == {("identify.raw", 0): 4}


def test_dead_letters_keep_the_original_bytes_and_say_why() -> None:
    h = Harness()
    raw = b'{"type": "identify", "userId": "u", "traits": {"email": "ada@@example.com"}}'
    h.feed(
        record(b"\xff not json", offset=0, key=b"k0", headers=[("trace", b"t-1")]),
        record(b"[1, 2]", offset=1),
        record(raw, offset=2),
        record(identify(userId=None), offset=3),
    )
    letters = h.sink.produced
    assert [(t, k, v) for t, k, v, _ in letters] == [
        ("identify.dlq", b"k0", b"\xff not json"),
        ("identify.dlq", None, b"[1, 2]"),
        ("identify.dlq", None, raw),
        ("identify.dlq", None, orjson.dumps(identify(userId=None))),
    ]
    headers = dict(letters[0][3] or [])
    assert headers["trace"] == b"t-1"
    assert headers["__connect.errors.topic"] == b"identify.raw"
    assert headers["__connect.errors.partition"] == b"0"
    assert headers["__connect.errors.offset"] == b"0"
    assert headers["__connect.errors.exception.class.name"] == b"processor.core.errors.DecodeError"
    assert headers["__connect.errors.exception.message"]
    assert headers["__enrichment.errors.reason"] == b"not_json"
    reasons = [dict(h or [])["__enrichment.errors.reason"] for *_, h in letters]
    assert reasons == [b"not_json", b"not_an_object", b"invalid_email", b"missing_identity"]
    assert b"ada@@example.com" not in b"".join(v or b"" for _, v in headers.items())
    assert h.submitted == []  # no paid lookup for an invalid email


def test_provider_rejection_and_exhausted_retries_are_dead_lettered() -> None:
    h = Harness()
    h.feed(record(identify("a@example.com"), offset=0), record(identify("b@example.com"), offset=1))
    h.answer("a@example.com", Rejected("422 params_invalid: Invalid email a@example.com"))
    h.answer("b@example.com", RetriesExhaustedError("gave up"))
    reasons = [headers["__enrichment.errors.reason"] for _, _, headers in h.dead_letters()]
    assert reasons == [b"provider_rejected", b"retries_exhausted"]
    message = h.dead_letters()[0][2]["__connect.errors.exception.message"]
    assert b"a@example.com" not in message
    # A 422 is remembered: the same email does not cost another request.
    h.feed(record(identify("a@example.com"), offset=2))
    assert h.submitted == ["a@example.com", "b@example.com"]
    assert len(h.dead_letters()) == 3


def test_same_key_keeps_its_order_other_keys_do_not_wait() -> None:
    h = Harness()
    h.feed(
        record(identify("slow@example.com", userId="u1"), offset=0),
        record(identify("fast@example.com", userId="u1"), offset=1),
        record(identify("fast@example.com", userId="u2"), offset=2),
    )
    h.answer("fast@example.com", Found(PERSON, None))
    keys = [k for k, _, _ in h.outputs()]
    assert keys == [b"u2"]  # u1's second event waits behind its first
    h.answer("slow@example.com", Found(None, COMPANY))
    assert [(k, e["traits"]["email"]) for k, e, _ in h.outputs()] == [
        (b"u2", "fast@example.com"), (b"u1", "slow@example.com"), (b"u1", "fast@example.com")]


def test_cached_record_behind_a_waiting_one_of_its_key_waits() -> None:
    h = Harness()
    h.feed(record(identify("c@example.com", userId="x"), offset=0))
    h.answer("c@example.com", Found(PERSON, None))
    h.feed(record(identify("new@example.com", userId="u"), offset=1),
           record(identify("c@example.com", userId="u"), offset=2))
    assert [e["traits"]["email"] for _, e, _ in h.outputs()] == ["c@example.com"]
    h.answer("new@example.com", NotFound())
    assert [e["traits"]["email"] for _, e, _ in h.outputs()] == ["c@example.com"] * 2


def test_a_refused_delivery_is_reported_and_nothing_past_it_commits() -> None:
    h = Harness()
    h.feed(record(identify(), offset=0))
    h.answer("ada@example.com", Found(PERSON, None))
    h.sink.fail()
    assert h.pipeline.refused == ["?: broker down"]
    assert h.pipeline.advance() == {}


def test_auth_failure_stops_without_committing_the_record() -> None:
    h = Harness()
    h.feed(record({"type": "track"}, offset=0), record(identify(), offset=1))
    h.answer("ada@example.com", ProviderAuthError("refused"))
    assert isinstance(h.pipeline.fatal, ProviderAuthError)
    assert h.pipeline.advance() == {("identify.raw", 0): 1}  # only the skip before it


def test_transactional_mode_decides_and_hands_out_in_order() -> None:
    h = Harness(transactional=True)
    h.feed(record(identify("slow@example.com"), offset=0),
           record(identify("fast@example.com"), offset=1),
           record({"type": "page"}, offset=2))
    h.answer("fast@example.com", Found(PERSON, None))
    assert h.sink.produced == []  # the stage produces inside its transaction
    outputs, positions = h.pipeline.take_decided()
    assert outputs == []
    assert positions == {}
    h.answer("slow@example.com", Found(None, COMPANY))
    outputs, positions = h.pipeline.take_decided()
    assert [orjson.loads(o[2] or b"")["traits"]["email"] for o in outputs] == [
        "slow@example.com", "fast@example.com"]
    assert positions == {("identify.raw", 0): 3}


def test_dropped_partitions_ignore_late_results() -> None:
    h = Harness()
    h.feed(record(identify(), offset=0, partition=1))
    h.pipeline.drop([("identify.raw", 1)])
    h.answer("ada@example.com", Found(PERSON, None))
    assert h.outputs() == []
    assert h.pipeline.outstanding() == 0


def test_accounting_identity_over_a_mixed_batch() -> None:
    h = Harness()
    batch = []
    for i in range(300):
        kind = i % 6
        if kind == 0:
            value: Any = identify(f"user{i}@example.com", userId=f"u{i}")
        elif kind == 1:
            value = identify(None)
        elif kind == 2:
            value = b"{broken"
        elif kind == 3:
            value = {"type": "track"}
        elif kind == 4:
            value = identify("dup@example.com", userId=f"u{i}")
        else:
            value = identify("bad@", userId=f"u{i}")
        batch.append(record(value, offset=i))
    h.feed(*batch)
    for email in h.submitted:
        h.answer(email, Found(PERSON, None) if email != "dup@example.com" else NotFound())
    h.sink.deliver()
    counts = h.counts()
    assert sum(counts.values()) == 300
    assert counts[("enriched", "")] == 50
    assert len(h.outputs()) == 50
    assert h.pipeline.advance() == {("identify.raw", 0): 300}


@pytest.mark.parametrize("transactional", [False, True])
def test_unfinished_counts(transactional: bool) -> None:
    h = Harness(transactional=transactional)
    h.feed(record(identify(), offset=0), record({"type": "track"}, offset=1))
    assert h.pipeline.unfinished() == 1
    h.answer("ada@example.com", Found(PERSON, None))
    h.sink.deliver()
    assert h.pipeline.unfinished() == 0
