"""The bounded lookup pool: a fixed number of workers on one asyncio loop in its own thread.

The stage's thread owns Kafka; lookups run here, ``max_in_flight`` at a time at
most, whatever the backlog. The stage submits distinct emails (the pipeline
has already coalesced duplicates) and collects finished results with
``take_completed``; both calls are thread-safe and never block.

Every policy that protects the provider and the bill lives here, shared by all
workers: the rate limiter (even spacing; a 429 holds everyone), the circuit
breaker (provider failing: no calls, then one probe), the quota gate (402:
pause and probe periodically; records are never dead-lettered for it), retries
with backoff up to ``max_attempts`` or ``retry_deadline``, and re-polling of
queued (202) lookups without holding a worker.

Every attempt ends within ``attempt_timeout`` whatever the HTTP client does (an
answer fed a byte at a time included), and once a lookup has failed, within what
is left of its ``retry_deadline``: counted from the start of its first failed
attempt, the deadline bounds the whole lookup. The circuit breaker hears only of
the provider's health (5xx, timeouts, connection errors); an answer that cannot
be used is that email's dead letter, not a failure of the provider.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from processor.core.backoff import Backoff
from processor.core.circuit import CircuitBreaker, CircuitState
from processor.core.clock import Clock
from processor.core.enrichment.answers import Found, LookupResult, NotFound, Queued, Rejected
from processor.core.errors import (
    LookupPendingError,
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    RetriesExhaustedError,
    TransientProviderError,
    UnexpectedError,
    UnusableAnswerError,
)
from processor.core.ratelimit import RateLimiter
from processor.runtime.loop_thread import stop_loop_thread
from processor.stages.enrichment.ports import EnrichmentSensor, Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LookupPolicy:
    max_in_flight: int = 32
    rate_limit_per_minute: float = 600.0
    max_attempts: int = 8
    retry_deadline: float = 300.0
    backoff: Backoff = field(default_factory=Backoff)
    breaker_threshold: int = 5
    breaker_reset: float = 10.0
    quota_retry_interval: float = 60.0
    queued_retry_delay: float = 5.0
    queued_deadline: float = 120.0
    attempt_timeout: float = 10.0


class _Job:
    __slots__ = ("attempts", "email", "failing_since", "queued_since")

    def __init__(self, email: str) -> None:
        self.email = email
        self.attempts = 0
        self.failing_since: float | None = None
        self.queued_since: float | None = None


class LookupPool:
    def __init__(
        self,
        provider_factory: Callable[[], Provider],
        policy: LookupPolicy,
        clock: Clock,
        sensor: EnrichmentSensor,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        self._provider_factory = provider_factory
        self._policy = policy
        self._clock = clock
        self._sensor = sensor
        self._completed: deque[tuple[str, LookupResult]] = deque()
        # The loop's own timers (sleeps, retries later) must run on ``clock`` too: tests
        # give a loop whose time is their fake clock.
        self._loop = loop_factory()
        self._thread = threading.Thread(target=self._run, name="lookup-pool", daemon=True)
        self._started = threading.Event()
        self._queue: asyncio.Queue[_Job] | None = None
        self._provider: Provider | None = None
        self._busy = 0
        self.limiter = RateLimiter(policy.rate_limit_per_minute, clock)
        self.breaker = CircuitBreaker(policy.breaker_threshold, policy.breaker_reset, clock)
        self.quota = CircuitBreaker(1, policy.quota_retry_interval, clock)

    # --- the stage's side (any thread) ------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def submit(self, emails: list[str]) -> None:
        """Queue lookups (one per distinct email); returns at once."""
        self._loop.call_soon_threadsafe(self._enqueue, emails)

    def take_completed(self) -> list[tuple[str, LookupResult]]:
        """Finished lookups since the last call."""
        completed = self._completed
        taken = []
        while completed:
            taken.append(completed.popleft())
        return taken

    @property
    def has_completed(self) -> bool:
        return bool(self._completed)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what is in flight (those records stay uncommitted) and close the provider."""
        stop_loop_thread(self._loop, self._thread, self._shutdown(), timeout, "lookup pool")

    # --- the loop's side ----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.Queue()
        self._provider = self._provider_factory()
        self._workers = [
            self._loop.create_task(self._worker(), name=f"lookup-{i}")
            for i in range(self._policy.max_in_flight)
        ]
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._provider is not None:
            await self._provider.aclose()

    def _enqueue(self, emails: list[str]) -> None:
        assert self._queue is not None  # noqa: S101 - set before the loop runs
        for email in emails:
            self._queue.put_nowait(_Job(email))

    def _requeue_later(self, job: _Job, delay: float) -> None:
        assert self._queue is not None  # noqa: S101 - set before the loop runs
        self._loop.call_later(delay, self._queue.put_nowait, job)

    def _finish(self, job: _Job, result: LookupResult) -> None:
        self._completed.append((job.email, result))

    async def _worker(self) -> None:
        assert self._queue is not None  # noqa: S101 - set before the loop runs
        while True:
            job = await self._queue.get()
            self._busy += 1
            self._sensor.lookups_in_flight(self._busy)
            try:
                await self._attempt(job)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A fatal stop (exit 3, one line), the traceback kept for DEBUG.
                log.debug("lookup worker failed unexpectedly", exc_info=True)
                self._finish(job, UnexpectedError.of(error, "a lookup"))
            finally:
                self._busy -= 1
                self._sensor.lookups_in_flight(self._busy)

    def _gate(self, job: _Job) -> float | None:
        """None when ``job`` may call now; else seconds until it should try again.

        An exhausted quota just makes records wait. An open circuit counts as
        failing: the job's retry deadline runs from the first time it is turned
        away, so a long outage ends in dead letters instead of an endless wait.
        """
        quota_wait = self.quota.admit()
        if quota_wait:
            return min(quota_wait, 1.0)
        breaker_wait = self.breaker.admit()
        if not breaker_wait:
            return None
        self.quota.release()
        now = self._clock.monotonic()
        if job.failing_since is None:
            job.failing_since = now
        remaining = job.failing_since + self._policy.retry_deadline - now
        return min(breaker_wait, max(remaining, 0.0))

    async def _pace(self) -> None:
        """Wait for this request's slot under the pool-wide rate limit."""
        while True:
            wait = self.limiter.reserve()
            if wait <= 0:
                return
            self._sensor.rate_limited_wait(wait)
            await asyncio.sleep(wait)
            if not self.limiter.held():
                return

    def _past_deadline(self, job: _Job) -> bool:
        return (
            job.failing_since is not None
            and self._clock.monotonic() - job.failing_since >= self._policy.retry_deadline
        )

    def _admitted(self, job: _Job) -> bool:
        """Whether ``job`` may call now; if not, it is put back or given up."""
        wait = self._gate(job)
        if wait is None:
            return True
        if self._past_deadline(job):
            self._give_up(job)
        else:
            self._requeue_later(job, wait)
        return False

    async def _attempt(self, job: _Job) -> None:
        assert self._provider is not None  # noqa: S101 - set before the loop runs
        provider = self._provider
        if not self._admitted(job):
            return
        await self._pace()
        started = self._clock.monotonic()
        budget = self._budget(job, started)
        if budget <= 0:
            self._give_up(job, "deadline")
            return
        try:
            answer = await self._find(provider, job.email, budget)
        except UnusableAnswerError as error:
            # This email's answer, not the provider's health: no verdict for either gate.
            self._observe(provider, error.status, started)
            self.breaker.release()
            self.quota.release()
            self._finish(job, error)
        except RateLimitedError as error:
            self._observe(provider, "429", started)
            self.breaker.release()
            self.quota.release()
            hold = error.retry_at or started + self._policy.backoff.delay(job.attempts + 1)
            self.limiter.hold_until(hold)
            self._sensor.retry(provider.name, "rate_limited")
            self._requeue_later(job, 0)
        except QuotaExhaustedError:
            self._observe(provider, "402", started)
            self.breaker.release()
            self.quota.failure()
            self._sensor.quota_exhausted(provider.name, True)
            log.warning("provider quota exhausted (402); pausing lookups, next probe in %.0fs",
                        self._policy.quota_retry_interval)
            self._requeue_later(job, 0)
        except TransientProviderError as error:
            self._observe(provider, error.status, started)
            self.quota.release()
            self.breaker.failure()
            self._sensor.circuit(provider.name, self.breaker.state)
            self._retry(job, error.status, started)
        except ProviderAuthError as error:
            self._observe(provider, "401", started)
            self._finish(job, error)
        else:
            self._succeeded(provider, job, answer, started)

    def _succeeded(self, provider: Provider, job: _Job,
                   answer: Found | NotFound | Queued | Rejected, started: float) -> None:
        self._observe(provider, _status_of(answer), started)
        self.breaker.success()
        if self.quota.state is not CircuitState.CLOSED:
            log.info("provider quota available again")
            self._sensor.quota_exhausted(provider.name, False)
        self.quota.success()
        self._sensor.circuit(provider.name, self.breaker.state)
        self._answered(job, answer)

    def _budget(self, job: _Job, now: float) -> float:
        """How long this attempt may take: ``attempt_timeout``, and no longer than what
        is left of the retry deadline once the lookup has failed."""
        if job.failing_since is None:
            return self._policy.attempt_timeout
        left = job.failing_since + self._policy.retry_deadline - now
        return min(self._policy.attempt_timeout, left)

    async def _find(self, provider: Provider, email: str,
                    budget: float) -> Found | NotFound | Queued | Rejected:
        try:
            async with asyncio.timeout(budget):
                return await provider.find(email)
        except TimeoutError:
            raise TransientProviderError("provider timed out", status="timeout") from None

    def _answered(self, job: _Job, answer: Found | NotFound | Queued | Rejected) -> None:
        if not isinstance(answer, Queued):
            self._finish(job, answer)
            return
        now = self._clock.monotonic()
        if job.queued_since is None:
            job.queued_since = now
        if now - job.queued_since >= self._policy.queued_deadline:
            self._finish(job, LookupPendingError(
                f"provider still had the lookup queued (202) after "
                f"{self._policy.queued_deadline:.0f}s"))
            return
        self._requeue_later(job, self._policy.queued_retry_delay)

    def _retry(self, job: _Job, status: str, started: float) -> None:
        job.attempts += 1
        now = self._clock.monotonic()
        if job.failing_since is None:
            job.failing_since = started
        delay = self._policy.backoff.delay(job.attempts)
        out_of_attempts = job.attempts >= self._policy.max_attempts
        if out_of_attempts or now + delay - job.failing_since >= self._policy.retry_deadline:
            self._give_up(job, status)
            return
        self._sensor.retry(self._provider.name if self._provider else "", status)
        self._requeue_later(job, delay)

    def _give_up(self, job: _Job, status: str = "circuit_open") -> None:
        self._finish(job, RetriesExhaustedError(
            f"lookup failed {job.attempts} time(s), last: {status}; gave up after "
            f"{self._policy.max_attempts} attempts / {self._policy.retry_deadline:.0f}s deadline"))

    def _observe(self, provider: Provider, status: str, started: float) -> None:
        self._sensor.lookup(provider.name, status, self._clock.monotonic() - started)


def _status_of(answer: Found | NotFound | Queued | Rejected) -> str:
    if isinstance(answer, Found):
        return "200"
    if isinstance(answer, NotFound):
        return "404"
    if isinstance(answer, Queued):
        return "202"
    return "422"
