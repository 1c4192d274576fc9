"""The enrichment stage's metrics (``enrichment_...``): the runtime's, and the lookup path's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from processor.adapters.runtime_metrics import RuntimeMetrics
from processor.core.clock import Clock
from processor.core.enrichment.outcomes import Outcome, SkipReason
from processor.core.errors import dead_letter_reasons


def _outcomes() -> list[tuple[str, str]]:
    return [(Outcome.ENRICHED, ""), *((Outcome.SKIPPED, s) for s in SkipReason),
            *((Outcome.DEAD_LETTERED, r) for r in dead_letter_reasons())]


class PrometheusSensor(RuntimeMetrics):
    """Implements ``processor.stages.enrichment.ports.EnrichmentSensor``."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 liveness_timeout: float = 60.0, clock: Clock | None = None) -> None:
        super().__init__("enrichment", _outcomes(), registry, liveness_timeout, clock)
        self._cache = self.counter("cache_requests",
                                   "Cache look-ups: hit, miss, or coalesced onto a lookup in "
                                   "flight.", ("result",))
        self._lookups = self.counter("lookups", "Provider HTTP requests by answer status.",
                                     ("provider", "status"))
        self._lookup_seconds = self.histogram("lookup_duration_seconds",
                                              "Provider request latency.", ("provider",))
        self._retries = self.counter("lookup_retries", "Lookups scheduled again, by reason.",
                                     ("provider", "reason"))
        self._limiter_waits = self.counter("rate_limiter_waits",
                                           "Requests that waited for the client-side rate "
                                           "limiter.")
        self._limiter_seconds = self.counter("rate_limiter_wait_seconds",
                                             "Time requests spent waiting for the rate limiter.")
        self._circuit = self.gauge("circuit_state",
                                   "Provider circuit breaker: 0 closed, 1 half-open, 2 open.",
                                   ("provider",))
        self._quota = self.gauge("quota_exhausted",
                                 "1 while the provider reports the quota exhausted (402).",
                                 ("provider",))
        self._in_flight = self.gauge("lookups_in_flight", "Lookups being worked on by the pool.")
        self._providers: set[str] = set()
        for result in ("hit", "miss", "coalesced"):
            self._cache.labels(result)

    def _provider_seen(self, provider: str) -> None:
        """Start a provider's state gauges at "closed" and "quota available": the pool
        reports them only on a change, and a panel or an alert needs the series before."""
        if provider not in self._providers:
            self._providers.add(provider)
            self._circuit.labels(provider)
            self._quota.labels(provider)

    def cache(self, hits: int, misses: int, coalesced: int) -> None:
        if hits:
            self._cache.labels("hit").inc(hits)
        if misses:
            self._cache.labels("miss").inc(misses)
        if coalesced:
            self._cache.labels("coalesced").inc(coalesced)

    def lookup(self, provider: str, status: str, seconds: float) -> None:
        self._provider_seen(provider)
        self._lookups.labels(provider, status).inc()
        self._lookup_seconds.labels(provider).observe(seconds)

    def retry(self, provider: str, reason: str) -> None:
        self._retries.labels(provider, reason).inc()

    def rate_limited_wait(self, seconds: float) -> None:
        self._limiter_waits.inc()
        self._limiter_seconds.inc(seconds)

    def circuit(self, provider: str, state: int) -> None:
        self._provider_seen(provider)
        self._circuit.labels(provider).set(state)

    def quota_exhausted(self, provider: str, exhausted: bool) -> None:
        self._provider_seen(provider)
        self._quota.labels(provider).set(1 if exhausted else 0)

    def lookups_in_flight(self, count: int) -> None:
        self._in_flight.set(count)
