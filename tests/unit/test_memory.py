"""The lookup cache: TTLs per kind, prepared traits, and sharing through a SharedCache."""

from __future__ import annotations

import orjson

from processor.adapters.cache_log import decode_entry, encode_entry
from processor.adapters.json_codec import JsonCodec
from processor.core.cache import TTLCache
from processor.core.enrichment.answers import (
    NOT_FOUND,
    CacheEntry,
    Enriched,
    Found,
    Kind,
    NotFound,
    Rejected,
    Remembered,
)
from processor.core.errors import RetriesExhaustedError
from processor.stages.enrichment.lookup_cache import LookupCache, shared_key
from tests.fakes import FakeClock


class FakeSharedCache:
    def __init__(self, stored: list[CacheEntry] | None = None) -> None:
        self.stored = list(stored or [])
        self.published: list[CacheEntry] = []
        self.incoming: list[CacheEntry] = []

    def load(self) -> list[CacheEntry]:
        return list(self.stored)

    def publish(self, entry: CacheEntry) -> None:
        self.published.append(entry)

    def updates(self) -> list[CacheEntry]:
        taken, self.incoming = self.incoming, []
        return taken

    def close(self) -> None:
        pass


def memory(clock: FakeClock, shared: FakeSharedCache | None = None) -> LookupCache:
    return LookupCache(cache=TTLCache[Remembered](100, clock), codec=JsonCodec(), clock=clock,
                        found_ttl=100, not_found_ttl=10, shared=shared)


def test_found_traits_are_prepared_once_with_the_email_inside() -> None:
    mem = memory(FakeClock())
    value = mem.remember("ada@example.com", Found({"name": {"givenName": "Ada"}}, None))
    assert isinstance(value, Enriched)
    assert orjson.loads(orjson.dumps({"t": value.traits})) == {
        "t": {"email": "ada@example.com", "clearbit_person_name_given_name": "Ada"}}
    assert mem.get("ada@example.com") == value


def test_each_kind_has_its_ttl_and_errors_are_not_remembered() -> None:
    clock = FakeClock()
    mem = memory(clock)
    mem.remember("a@example.com", Found({"id": 1}, None))
    assert mem.remember("b@example.com", NotFound()) is NOT_FOUND
    assert mem.remember("c@example.com", Rejected("422 bad")) == Rejected("422 bad")
    mem.remember("d@example.com", RetriesExhaustedError("down"))
    assert mem.get("d@example.com") is None
    clock.advance(11)
    assert mem.get("a@example.com") is not None
    assert mem.get("b@example.com") is None
    assert mem.get("c@example.com") is None
    clock.advance(90)
    assert mem.get("a@example.com") is None


def test_shared_entries_are_keyed_by_hash_and_carry_their_expiry() -> None:
    clock = FakeClock()
    shared = FakeSharedCache()
    mem = memory(clock, shared)
    mem.remember("ada@example.com", Found({"id": 1}, None))
    (entry,) = shared.published
    assert entry.key == shared_key("ada@example.com")
    assert "ada" not in entry.key
    assert entry.kind == Kind.FOUND
    assert entry.expires_at == clock.time() + 100
    assert entry.traits == {"email": "ada@example.com", "clearbit_person_id": 1}


def test_a_restart_loads_what_was_learnt_and_skips_what_expired() -> None:
    clock = FakeClock()
    first = FakeSharedCache()
    memory(clock, first).remember("ada@example.com", Found({"id": 1}, None))
    memory(clock, first).remember("gone@example.com", NotFound())
    clock.advance(50)  # the not-found entry (10 s) expired meanwhile
    restarted = memory(clock, FakeSharedCache(first.published))
    assert restarted.load() == 1
    assert isinstance(restarted.get("ada@example.com"), Enriched)
    assert restarted.get("gone@example.com") is None


def test_updates_from_other_replicas_are_merged() -> None:
    clock = FakeClock()
    shared = FakeSharedCache()
    mem = memory(clock, shared)
    shared.incoming = [CacheEntry(shared_key("x@example.com"), Kind.REJECTED, None, "422",
                                  clock.time() + 5)]
    assert mem.refresh() == 1
    assert mem.get("x@example.com") == Rejected("422")


def test_cache_topic_records_round_trip_and_junk_is_ignored() -> None:
    entry = CacheEntry("abc", Kind.FOUND, {"email": "a@example.com", "x": [1]}, None, 123.5)
    assert decode_entry(b"abc", encode_entry(entry)) == entry
    for key, value in [(b"k", None), (None, b"{}"), (b"k", b"not json"), (b"k", b"[]"),
                       (b"k", b'{"v": 2, "kind": "found", "expires_at": 1}'),
                       (b"k", b'{"v": 1, "kind": "weird", "expires_at": 1}'),
                       (b"k", b'{"v": 1, "kind": "found", "expires_at": "soon"}')]:
        assert decode_entry(key, value) is None
