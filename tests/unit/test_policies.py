"""The pure building blocks: offset ledger, key sequencer, cache, limiter, breaker, backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core.backoff import Backoff
from processor.core.cache import TTLCache
from processor.core.circuit import CircuitBreaker, CircuitState
from processor.core.offsets import OffsetLedger, PartitionLedger
from processor.core.ratelimit import RateLimiter
from processor.core.redact import email_hash, redact
from processor.core.sequencer import KeySequencer
from tests.fakes import FakeClock

# --- offsets ------------------------------------------------------------------------


def test_position_never_skips_a_gap() -> None:
    ledger = PartitionLedger()
    slots = [ledger.track(offset) for offset in (10, 11, 13, 14)]  # 12: a control record
    slots[1].done = slots[3].done = True
    assert not ledger.advance()
    assert ledger.position is None
    slots[0].done = True
    assert ledger.advance()
    assert ledger.position == 12
    slots[2].done = True
    ledger.advance()
    assert ledger.position == 15
    assert len(ledger) == 0


def test_offsets_must_increase() -> None:
    ledger = PartitionLedger()
    ledger.track(5)
    with pytest.raises(ValueError, match="out of order"):
        ledger.track(5)


@given(st.permutations(list(range(30))))
def test_any_completion_order_commits_exactly_the_contiguous_prefix(order: list[int]) -> None:
    ledger = PartitionLedger()
    slots = [ledger.track(offset) for offset in range(30)]
    done: set[int] = set()
    for offset in order:
        slots[offset].done = True
        done.add(offset)
        ledger.advance()
        prefix = next((i for i in range(30) if i not in done), 30)
        assert (ledger.position or 0) == prefix


def test_ledger_over_partitions() -> None:
    ledger = OffsetLedger()
    a = ledger.partition(("t", 0)).track(0)
    b = ledger.partition(("t", 1)).track(7)
    assert ledger.outstanding() == 2
    b.done = True
    assert ledger.advance() == {("t", 1): 8}
    assert ledger.advance() == {}
    a.done = True
    assert ledger.advance() == {("t", 0): 1}
    assert ledger.positions() == {("t", 0): 1, ("t", 1): 8}
    ledger.drop(("t", 0))
    assert ("t", 0) not in ledger


# --- sequencer ----------------------------------------------------------------------


def test_same_key_leaves_in_arrival_order_other_keys_do_not_wait() -> None:
    seq: KeySequencer[str] = KeySequencer()
    first = seq.enter("k", "k1")
    second = seq.enter("k", "k2")
    other = seq.enter("j", "j1")
    assert seq.ready(second) == []
    assert seq.ready(other) == ["j1"]
    assert seq.ready(first) == ["k1", "k2"]
    assert not seq.busy("k")
    assert len(seq) == 0


def test_sequencer_drop() -> None:
    seq: KeySequencer[str] = KeySequencer()
    seq.enter(("p0", b"k"), "a")
    seq.enter(("p1", b"k"), "b")
    seq.drop(lambda key: key[0] == "p0")
    assert not seq.busy(("p0", b"k"))
    assert seq.busy(("p1", b"k"))


# --- cache --------------------------------------------------------------------------


def test_cache_expires_on_the_injected_clock() -> None:
    clock = FakeClock()
    cache: TTLCache[str] = TTLCache(10, clock)
    cache.put("a", "found", ttl=60)
    cache.put("b", "missing", ttl=5)
    clock.advance(10)
    assert cache.get("a") == "found"
    assert cache.get("b") is None
    clock.advance(50)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache: TTLCache[int] = TTLCache(3, FakeClock())
    for i in range(3):
        cache.put(str(i), i, ttl=100)
    assert cache.get("0") == 0  # "1" is now the least recently used
    cache.put("3", 3, ttl=100)
    assert cache.get("1") is None
    assert [cache.get(k) for k in "023"] == [0, 2, 3]
    for i in range(1000):
        cache.put(f"x{i}", i, ttl=100)
    assert len(cache) == 3


def test_cache_of_size_zero_stores_nothing() -> None:
    cache: TTLCache[int] = TTLCache(0, FakeClock())
    cache.put("a", 1, ttl=100)
    assert cache.get("a") is None


# --- rate limiter ---------------------------------------------------------------------


def test_limiter_spaces_requests_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock, headroom=0.0)
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_limiter_never_accumulates_a_burst_while_idle() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock, headroom=0.0)
    limiter.reserve()
    clock.advance(3600)
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(1.0)


def test_limiter_hold_applies_to_everyone() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock, headroom=0.0)
    limiter.reserve()
    limiter.hold_until(clock.now + 30)
    assert limiter.held()
    assert limiter.reserve() == pytest.approx(30.0)
    assert limiter.reserve() == pytest.approx(30.1)
    clock.advance(31)
    assert not limiter.held()


def test_limiter_headroom_and_unlimited() -> None:
    clock = FakeClock()
    assert RateLimiter(600, clock).interval == pytest.approx(0.101)
    unlimited = RateLimiter(0, clock)
    assert [unlimited.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


# --- circuit breaker ----------------------------------------------------------------------


def test_breaker_opens_probes_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        assert breaker.admit() == 0
        breaker.failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.admit() == pytest.approx(10)
    clock.advance(10)
    assert breaker.admit() == 0  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.admit() > 0  # only one probe at a time
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    clock.advance(10)
    assert breaker.admit() == 0
    breaker.success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.admit() == 0


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=1, clock=FakeClock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is CircuitState.CLOSED


# --- backoff and redaction -------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (500, 8.0)]:
        delay = backoff.delay(attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_redact_removes_emails_and_keys() -> None:
    text = redact("Invalid email: Ada.L+x@Example.com with key sk_live_abc123 or pk_test_9")
    assert "Example.com" not in text
    assert "sk_live" not in text
    assert "pk_test" not in text
    assert "<email>" in text
    assert "<key>" in text
    assert len(redact("x" * 5000)) <= 500


def test_email_hash_is_stable_and_short() -> None:
    assert email_hash("ada@example.com") == email_hash("ada@example.com")
    assert len(email_hash("ada@example.com")) == 12
    assert "ada" not in email_hash("ada@example.com")
