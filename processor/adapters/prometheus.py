"""Prometheus metrics (``PrometheusSensor``) and the HTTP endpoint that serves them.

Metrics live in a ``CollectorRegistry`` created per sensor, never on the
global registry at import time, so every test and every stage gets its own.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` in base
units) under the ``enrichment_`` prefix, which stays clear of kafka_exporter's
``kafka_consumergroup_*``. No label ever carries an email, a user id or a key:
labels are topics, partitions, outcomes, reason codes and status codes.

The same port answers ``/healthz`` (the main loop turned recently) and
``/readyz`` (running, with partitions assigned, not failed).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from processor import __version__
from processor.core.enrichment.outcomes import Outcome, SkipReason
from processor.core.errors import dead_letter_reasons

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one locked update per bucket.

    Relies on prometheus-client's internals (``_upper_bounds``, ``_buckets``, ``_sum``),
    pinned below 0.27 in pyproject; a test compares it with per-value ``observe``."""
    bounds: list[float] = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for raw in values:
        value = max(0.0, raw)
        total += value
        counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(total)


class PrometheusSensor:
    """Implements ``processor.runtime.ports.Sensor`` with prometheus-client metrics."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 liveness_timeout: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall_time: Callable[[], float] = time.time) -> None:
        # No `*_created` gauge beside every counter and histogram: in Prometheus' text
        # format each is a series of its own, doubling the count for nothing a
        # dashboard uses. (A process-wide switch of prometheus-client, set here
        # rather than at import time.)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = registry or CollectorRegistry()
        self._monotonic = monotonic
        self._wall_time = wall_time
        r = self.registry
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=r)

        self._consumed = counter("enrichment_records_consumed",
                                 "Records read from the input topic.")
        self._events = counter("enrichment_events",
                               "Input records by final outcome and reason.", ("outcome", "reason"))
        self._cache = counter("enrichment_cache_requests",
                              "Cache look-ups: hit, miss, or coalesced onto a lookup in flight.",
                              ("result",))
        self._lookups = counter("enrichment_lookups",
                                "Provider HTTP requests by answer status.", ("provider", "status"))
        self._lookup_seconds = histogram("enrichment_lookup_duration_seconds",
                                         "Provider request latency.", ("provider",))
        self._retries = counter("enrichment_lookup_retries",
                                "Lookups scheduled again, by reason.", ("provider", "reason"))
        self._limiter_waits = counter("enrichment_rate_limiter_waits",
                                      "Requests that waited for the client-side rate limiter.")
        self._limiter_seconds = counter("enrichment_rate_limiter_wait_seconds",
                                        "Time requests spent waiting for the rate limiter.")
        self._circuit = gauge("enrichment_circuit_state",
                              "Provider circuit breaker: 0 closed, 1 half-open, 2 open.",
                              ("provider",))
        self._quota = gauge("enrichment_quota_exhausted",
                            "1 while the provider reports the quota exhausted (402).",
                            ("provider",))
        self._in_flight = gauge("enrichment_lookups_in_flight",
                                "Lookups being worked on by the pool.")
        self._buffered = gauge("enrichment_buffered_records",
                               "Records consumed and not yet committed.")
        self._paused = gauge("enrichment_fetch_paused",
                             "1 while fetching is paused for backpressure.")
        self._e2e = histogram("enrichment_end_to_end_latency_seconds",
                              "Input record timestamp to output delivery.")
        self._produce_errors = counter("enrichment_produce_errors",
                                       "Outputs or dead letters the broker did not confirm.")
        self._trimmed = counter("enrichment_dead_letters_trimmed",
                                "Dead letters that left out the original value (or headers, "
                                "or key) to fit the dead-letter topic, by reason.", ("reason",))
        self._commits = counter("enrichment_commits", "Offset commits by result.", ("result",))
        self._last_commit = gauge("enrichment_last_commit_timestamp_seconds",
                                  "Wall time of the last successful commit.")
        self._lag = gauge("enrichment_consumer_lag_records",
                          "Log-end offset minus the group's committed offset, per owned "
                          "partition.", ("topic", "partition"))
        # Without it a lag gauge frozen by a failing measurement looks like a real figure.
        self._lag_measured = gauge("enrichment_consumer_lag_measured_timestamp_seconds",
                                   "Wall time of the last successful consumer lag measurement.")
        self._ready = gauge("enrichment_ready",
                            "1 while ready (/readyz): in the group, assignment received.")
        info = Gauge("enrichment_build_info", "Version of the stage.", ["version"], registry=r)
        info.labels(__version__).set(1)
        self._lag_series: set[tuple[str, str]] = set()
        self._providers: set[str] = set()
        self._lock = threading.Lock()
        self._liveness_timeout = liveness_timeout
        self._heartbeat = monotonic()
        self.alive = False
        self.is_ready = False
        self._precreate()

    def _precreate(self) -> None:
        # Series exist at 0 from the start, so rate() and absent() behave on dashboards.
        self._events.labels(Outcome.ENRICHED, "")
        for skip in SkipReason:
            self._events.labels(Outcome.SKIPPED, skip)
        for reason in dead_letter_reasons():
            self._events.labels(Outcome.DEAD_LETTERED, reason)
            self._trimmed.labels(reason)
        for result in ("hit", "miss", "coalesced"):
            self._cache.labels(result)
        for result in ("ok", "error"):
            self._commits.labels(result)

    def _provider_seen(self, provider: str) -> None:
        """Start a provider's state gauges at "closed" and "quota available": the pool
        reports them only on a change, and a panel or an alert needs the series before."""
        if provider not in self._providers:
            self._providers.add(provider)
            self._circuit.labels(provider)
            self._quota.labels(provider)

    # --- Sensor hooks ------------------------------------------------------------

    def consumed(self, count: int) -> None:
        self._consumed.inc(count)
        self._heartbeat = self._monotonic()

    def outcomes(self, counts: dict[tuple[str, str], int]) -> None:
        for (outcome, reason), n in counts.items():
            self._events.labels(outcome, reason).inc(n)

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

    def buffered(self, records: int, paused: bool) -> None:
        self._buffered.set(records)
        self._paused.set(1 if paused else 0)
        self._heartbeat = self._monotonic()

    def end_to_end(self, seconds: Sequence[float]) -> None:
        # One observation per event took 7% of the cached path (profiled): a batch is
        # counted into buckets here and added to the histogram once per bucket.
        observe_many(self._e2e, seconds)

    def produce_error(self) -> None:
        self._produce_errors.inc()

    def dead_letters_trimmed(self, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            self._trimmed.labels(reason).inc(n)

    def committed(self, ok: bool, wall_time: float) -> None:
        self._commits.labels("ok" if ok else "error").inc()
        if ok:
            self._last_commit.set(wall_time)

    def lag(self, lags: dict[tuple[str, int], int]) -> None:
        with self._lock:
            current = {(t, str(p)) for t, p in lags}
            for series in self._lag_series - current:
                self._lag.remove(*series)
            for (topic, partition), value in lags.items():
                self._lag.labels(topic, str(partition)).set(value)
            self._lag_series = current
            self._lag_measured.set(self._wall_time())

    def state(self, alive: bool, ready: bool) -> None:
        self.alive = alive
        self.is_ready = ready
        self._ready.set(1 if ready and alive else 0)
        self._heartbeat = self._monotonic()

    # --- probes ----------------------------------------------------------------

    def live(self) -> bool:
        """The main loop runs and turned within ``liveness_timeout`` (a stuck loop is dead)."""
        return self.alive and self._monotonic() - self._heartbeat < self._liveness_timeout

    def ready(self) -> bool:
        """Live, and a member of the group with its assignment (possibly empty) received."""
        return self.live() and self.is_ready


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, sensor: PrometheusSensor, host: str, port: int) -> None:
        registry = sensor.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = sensor.live()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not live\n")
                elif path == "/readyz":
                    ok = sensor.ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _send(self, status: int, body: bytes,
                      content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # scrapes every few seconds are not news

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on :%d (/metrics, /healthz, /readyz)", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
