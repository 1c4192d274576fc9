"""The metrics every stage's runtime reports, and the HTTP endpoint that serves them.

Metrics live in a ``CollectorRegistry`` created per sensor, never on the
global registry at import time, so every test and every stage gets its own.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` in base
units) under each stage's prefix (``enrichment_``, ``conversions_``), which stays
clear of kafka_exporter's ``kafka_consumergroup_*``. No label ever carries an
email, a user id or a key: labels are topics, partitions, outcomes, reason codes,
status codes and audience keys from the configuration.

The same port answers ``/healthz`` (the main loop turned recently) and
``/readyz`` (running, with partitions assigned, not failed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
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
from processor.adapters.library_internals import observe_many
from processor.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RuntimeMetrics:
    """Implements ``processor.runtime.ports.Sensor``: what the loop reports, named
    ``<prefix>_...``. ``outcomes`` lists the (outcome, reason) series to start at 0."""

    def __init__(self, prefix: str, outcomes: Iterable[tuple[str, str]],
                 registry: CollectorRegistry | None = None,
                 liveness_timeout: float = 60.0, clock: Clock | None = None) -> None:
        # No `*_created` gauge beside every counter and histogram: in Prometheus' text
        # format each is a series of its own, doubling the count for nothing a
        # dashboard uses. (A process-wide switch of prometheus-client, set here
        # rather than at import time.)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = registry or CollectorRegistry()
        self.prefix = prefix
        self._clock = clock = clock or SystemClock()
        self._consumed = self.counter("records_consumed", "Records read from the input topics.")
        self._events = self.counter("events", "Input records by final outcome and reason.",
                                    ("outcome", "reason"))
        self._buffered = self.gauge("buffered_records", "Records consumed and not yet committed.")
        self._paused = self.gauge("fetch_paused",
                                  "1 while the stage takes no records, for backpressure.")
        self._e2e = self.histogram("end_to_end_latency_seconds",
                                   "Input record timestamp to output delivery.")
        self._produce_errors = self.counter("produce_errors",
                                            "Outputs or dead letters the broker did not confirm.")
        self._trimmed = self.counter("dead_letters_trimmed",
                                     "Dead letters that left out the original value (or "
                                     "headers, or key) to fit the dead-letter topic, by reason.",
                                     ("reason",))
        self._commits = self.counter("commits", "Offset commits by result.", ("result",))
        self._last_commit = self.gauge("last_commit_timestamp_seconds",
                                       "Wall time of the last successful commit.")
        self._lag = self.gauge("consumer_lag_records",
                               "Log-end offset minus the group's committed offset, per owned "
                               "partition.", ("topic", "partition"))
        # Without it a lag gauge frozen by a failing measurement looks like a real figure.
        self._lag_measured = self.gauge("consumer_lag_measured_timestamp_seconds",
                                        "Wall time of the last successful consumer lag "
                                        "measurement.")
        self._ready = self.gauge("ready",
                                 "1 while ready (/readyz): in the group, assignment received.")
        self.gauge("build_info", "Version of the stage.", ("version",)).labels(__version__).set(1)
        self._lag_series: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._liveness_timeout = liveness_timeout
        self._heartbeat = clock.monotonic()
        self.alive = False
        self.is_ready = False
        # Series exist at 0 from the start, so rate() and absent() behave on dashboards.
        for outcome, reason in outcomes:
            self._events.labels(outcome, reason)
            if outcome == "dead_lettered":
                self._trimmed.labels(reason)
        for result in ("ok", "error"):
            self._commits.labels(result)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(f"{self.prefix}_{name}", doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{self.prefix}_{name}", doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(f"{self.prefix}_{name}", doc, labels, buckets=buckets,
                         registry=self.registry)

    # --- Sensor hooks ------------------------------------------------------------

    def consumed(self, count: int) -> None:
        self._consumed.inc(count)
        self._heartbeat = self._clock.monotonic()

    def outcomes(self, counts: dict[tuple[str, str], int]) -> None:
        for (outcome, reason), n in counts.items():
            self._events.labels(outcome, reason).inc(n)

    def buffered(self, records: int, paused: bool) -> None:
        self._buffered.set(records)
        self._paused.set(1 if paused else 0)
        self._heartbeat = self._clock.monotonic()

    def end_to_end(self, seconds: Sequence[float]) -> None:
        # A batch is counted into buckets here and added once per bucket: one
        # observation per event was a measurable share of the cached path.
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
            self._lag_measured.set(self._clock.time())

    def state(self, alive: bool, ready: bool) -> None:
        self.alive = alive
        self.is_ready = ready
        self._ready.set(1 if ready and alive else 0)
        self._heartbeat = self._clock.monotonic()

    # --- probes ----------------------------------------------------------------

    def live(self) -> bool:
        """The main loop runs and turned within ``liveness_timeout`` (a stuck loop is dead)."""
        return self.alive and self._clock.monotonic() - self._heartbeat < self._liveness_timeout

    def ready(self) -> bool:
        """Live, and a member of the group with its assignment (possibly empty) received."""
        return self.live() and self.is_ready


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, sensor: RuntimeMetrics, host: str, port: int) -> None:
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
