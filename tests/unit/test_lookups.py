"""The lookup pool against a scripted in-process provider (real thread, real event loop)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable

import pytest

from processor.core.backoff import Backoff
from processor.core.enrichment.answers import Answer, Found, NotFound, Queued
from processor.core.errors import (
    AnswerTooLargeError,
    LookupPendingError,
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    RetriesExhaustedError,
    TransientProviderError,
    UnusableAnswerError,
)
from processor.stages.enrichment.lookup_cache import LookupResult
from processor.stages.enrichment.lookups import LookupPolicy, LookupPool
from tests.fakes import FakeClock, FakeTimeLoop, RecordingSensor

# Shared by a test's provider and pool; each test moves it forward from where it is.
CLOCK = FakeClock()

Script = Callable[[str, int], Answer]  # (email, attempt number) -> answer, or raises


class FakeProvider:
    name = "fake"

    def __init__(self, script: Script, latency: float = 0.0,
                 clock: FakeClock | None = None) -> None:
        self.script = script
        self.clock = clock or CLOCK
        self.latency = latency
        self.calls: Counter[str] = Counter()
        self.concurrent = 0
        self.peak = 0
        self.times: list[float] = []
        self.closed = False

    async def find(self, email: str) -> Answer:
        self.calls[email] += 1
        self.times.append(self.clock.monotonic())
        self.concurrent += 1
        self.peak = max(self.peak, self.concurrent)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return self.script(email, self.calls[email])
        finally:
            self.concurrent -= 1

    async def aclose(self) -> None:
        self.closed = True


FAST = dict(backoff=Backoff(base=0.01, cap=0.02), rate_limit_per_minute=0.0)


def run_pool(provider: FakeProvider, emails: list[str], timeout: float = 10.0,
             **policy: object) -> tuple[dict[str, LookupResult], RecordingSensor]:
    sensor = RecordingSensor()
    options = {**FAST, **policy}
    pool = LookupPool(lambda: provider, LookupPolicy(**options),  # type: ignore[arg-type]
                      provider.clock, sensor, loop_factory=lambda: FakeTimeLoop(provider.clock))
    pool.start()
    results: dict[str, LookupResult] = {}
    try:
        pool.submit(emails)
        deadline = time.monotonic() + timeout
        while len(results) < len(emails) and time.monotonic() < deadline:
            results.update(pool.take_completed())
            time.sleep(0.005)
    finally:
        pool.stop()
    assert provider.closed
    return results, sensor


def test_bounded_concurrency() -> None:
    provider = FakeProvider(lambda e, n: Found({"id": e}, None), latency=0.02)
    emails = [f"u{i}@example.com" for i in range(100)]
    results, sensor = run_pool(provider, emails, max_in_flight=8)
    assert len(results) == 100
    assert provider.peak == 8
    assert max(sensor.in_flight) == 8


def test_transient_failures_are_retried_then_succeed() -> None:
    def flaky(email: str, attempt: int) -> Answer:
        if attempt < 3:
            raise TransientProviderError("503", status="503")
        return Found({"id": 1}, None)

    provider = FakeProvider(flaky)
    results, sensor = run_pool(provider, ["a@example.com"], max_attempts=5)
    assert isinstance(results["a@example.com"], Found)
    assert provider.calls["a@example.com"] == 3
    assert sensor.retries[("fake", "503")] == 2


def test_retries_exhausted_after_max_attempts() -> None:
    def down(email: str, attempt: int) -> Answer:
        raise TransientProviderError("timeout", status="timeout")

    provider = FakeProvider(down)
    results, _ = run_pool(provider, ["a@example.com"], max_attempts=3, breaker_threshold=100)
    assert isinstance(results["a@example.com"], RetriesExhaustedError)
    assert provider.calls["a@example.com"] == 3


def test_circuit_opens_and_stops_calls() -> None:
    def down(email: str, attempt: int) -> Answer:
        raise TransientProviderError("503", status="503")

    provider = FakeProvider(down)
    emails = [f"u{i}@example.com" for i in range(20)]
    started = CLOCK.monotonic()
    results, sensor = run_pool(provider, emails, max_in_flight=1, max_attempts=1000,
                               retry_deadline=0.5, breaker_threshold=3, breaker_reset=10.0)
    assert len(results) == 20
    assert all(isinstance(r, RetriesExhaustedError) for r in results.values())
    # Records turned away by the open circuit waited out their deadline, not the circuit.
    assert CLOCK.monotonic() - started < 5
    # Three failures opened the circuit; during its 10 s nothing else was called.
    assert sum(provider.calls.values()) == 3
    assert 2 in sensor.circuit_states


def test_rate_limit_429_holds_the_whole_pool_and_is_never_a_dead_letter() -> None:
    state = {"limited_until": 0.0}

    def limited(email: str, attempt: int) -> Answer:
        now = CLOCK.monotonic()
        if not state["limited_until"]:
            state["limited_until"] = now + 0.3
        if now < state["limited_until"]:
            raise RateLimitedError("429", retry_at=state["limited_until"])
        return Found({"id": email}, None)

    provider = FakeProvider(limited)
    emails = [f"u{i}@example.com" for i in range(10)]
    results, sensor = run_pool(provider, emails, max_in_flight=10)
    assert all(isinstance(r, Found) for r in results.values())
    # After the first 429 everyone waited: at most the requests already on their way
    # (one per worker) hit the limit.
    assert sensor.lookups[("fake", "429")] <= 10
    late = [t for t in provider.times if t >= state["limited_until"]]
    assert len(late) == 10


def test_client_side_rate_limit_spaces_requests() -> None:
    provider = FakeProvider(lambda e, n: NotFound())
    emails = [f"u{i}@example.com" for i in range(6)]
    run_pool(provider, emails, max_in_flight=6, rate_limit_per_minute=1200.0)  # one per 50 ms
    gaps = [b - a for a, b in itertools.pairwise(provider.times)]
    assert min(gaps) >= 0.045


def test_quota_exhausted_pauses_and_probes_without_dead_letters() -> None:
    state = {"until": CLOCK.monotonic() + 0.4}

    def quota(email: str, attempt: int) -> Answer:
        if CLOCK.monotonic() < state["until"]:
            raise QuotaExhaustedError("402")
        return Found({"id": email}, None)

    provider = FakeProvider(quota)
    emails = [f"u{i}@example.com" for i in range(5)]
    results, sensor = run_pool(provider, emails, max_in_flight=5, quota_retry_interval=0.1)
    assert all(isinstance(r, Found) for r in results.values())
    assert sensor.quota == {"fake": False}
    # While exhausted, only probes went out (about one per interval), not every record.
    assert sensor.lookups[("fake", "402")] <= 10


def test_queued_202_is_asked_again_later_without_holding_a_worker() -> None:
    def queued(email: str, attempt: int) -> Answer:
        if email.startswith("queued") and attempt < 3:
            return Queued()
        return Found({"id": email}, None)

    provider = FakeProvider(queued)
    results, _ = run_pool(provider, ["queued@example.com", "b@example.com"], max_in_flight=1,
                          queued_retry_delay=0.2)
    assert isinstance(results["queued@example.com"], Found)
    assert provider.calls["queued@example.com"] == 3
    # b was not stuck behind the re-polling: it went out right after the first 202.
    assert provider.times[1] - provider.times[0] < 0.1


def test_queued_past_the_deadline_is_a_dead_letter() -> None:
    provider = FakeProvider(lambda e, n: Queued())
    results, _ = run_pool(provider, ["q@example.com"], queued_retry_delay=0.05,
                          queued_deadline=0.2)
    assert isinstance(results["q@example.com"], LookupPendingError)


def test_auth_failure_is_reported_as_fatal() -> None:
    def refused(email: str, attempt: int) -> Answer:
        raise ProviderAuthError("401")

    results, _ = run_pool(FakeProvider(refused), ["a@example.com"])
    assert isinstance(results["a@example.com"], ProviderAuthError)


@pytest.mark.parametrize("workers", [1, 4])
def test_every_submitted_email_completes_exactly_once(workers: int) -> None:
    provider = FakeProvider(lambda e, n: NotFound(), latency=0.001)
    emails = [f"u{i}@example.com" for i in range(200)]
    sensor = RecordingSensor()
    pool = LookupPool(lambda: provider, LookupPolicy(max_in_flight=workers, **FAST),  # type: ignore[arg-type]
                      provider.clock, sensor, loop_factory=lambda: FakeTimeLoop(provider.clock))
    pool.start()
    seen: deque[str] = deque()
    try:
        for i in range(0, 200, 50):
            pool.submit(emails[i:i + 50])
        deadline = time.monotonic() + 10
        while len(seen) < 200 and time.monotonic() < deadline:
            seen.extend(email for email, _ in pool.take_completed())
            time.sleep(0.005)
    finally:
        pool.stop()
    assert sorted(seen) == sorted(emails)


def test_unusable_answers_are_that_emails_dead_letters_and_leave_the_circuit_closed() -> None:
    def odd(email: str, attempt: int) -> Answer:
        if email.startswith("odd"):
            raise (AnswerTooLargeError("too big") if email.startswith("odd-big")
                   else UnusableAnswerError("not JSON"))
        return Found({"id": email}, None)

    provider = FakeProvider(odd)
    emails = [f"odd{i}@example.com" for i in range(10)] + ["odd-big@example.com",
                                                           "fine@example.com"]
    results, sensor = run_pool(provider, emails, max_in_flight=1, breaker_threshold=2)
    assert isinstance(results["fine@example.com"], Found)
    assert isinstance(results["odd-big@example.com"], AnswerTooLargeError)
    assert all(isinstance(results[f"odd{i}@example.com"], UnusableAnswerError)
               for i in range(10))
    assert all(provider.calls[e] == 1 for e in emails)  # not retried
    assert sensor.lookups[("fake", "bad_body")] == 10
    assert sensor.lookups[("fake", "too_large")] == 1
    assert 2 not in sensor.circuit_states  # never open, though the threshold is 2


def test_an_attempt_that_never_ends_is_bounded_by_the_attempt_timeout() -> None:
    async def forever(email: str) -> Answer:
        provider.calls[email] += 1
        await asyncio.sleep(3600)  # a body fed a byte at a time, say
        raise AssertionError("unreachable")

    provider = FakeProvider(lambda e, n: NotFound())
    provider.find = forever  # type: ignore[method-assign]
    started = provider.clock.monotonic()
    results, sensor = run_pool(provider, ["drip@example.com"], max_attempts=2,
                               attempt_timeout=0.2, breaker_threshold=100)
    assert isinstance(results["drip@example.com"], RetriesExhaustedError)
    assert provider.calls["drip@example.com"] == 2
    assert sensor.lookups[("fake", "timeout")] == 2
    assert provider.clock.monotonic() - started < 2  # not the hour it asked for


def test_the_retry_deadline_bounds_the_whole_lookup_not_only_the_waits() -> None:
    async def slow_failure(email: str) -> Answer:
        provider.calls[email] += 1
        await asyncio.sleep(0.3)
        raise TransientProviderError("503", status="503")

    provider = FakeProvider(lambda e, n: NotFound())
    provider.find = slow_failure  # type: ignore[method-assign]
    started = provider.clock.monotonic()
    results, _ = run_pool(provider, ["a@example.com"], max_attempts=100, attempt_timeout=10,
                          retry_deadline=1.0, breaker_threshold=100)
    took = provider.clock.monotonic() - started
    assert isinstance(results["a@example.com"], RetriesExhaustedError)
    # From the start of the first failed attempt: 1 s, the last attempt cut short.
    assert 0.9 <= took < 1.6
