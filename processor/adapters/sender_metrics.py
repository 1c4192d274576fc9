"""The sender's metrics (``conversions_...``): the runtime's, and delivery per destination.

Labels are bounded: destinations and statuses are fixed vocabularies, audiences come
from the configuration, reasons are the platforms' own error codes. The runtime's series
(``conversions_consumer_lag_records``, ``conversions_commits_total``...) share the
conversions stage's names; a scrape job (``clearbit-conversions-sender``) tells them
apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from processor.adapters.runtime_metrics import RuntimeMetrics
from processor.core.clock import Clock
from processor.core.conversions.audit import Status
from processor.core.conversions.sending import GOOGLE_MAX_EVENTS, Destination
from processor.core.errors import dead_letter_reasons

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, GOOGLE_MAX_EVENTS)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MATCH_KEYS = {Destination.META: ("em", "ph", "fn", "ln", "external_id", "client_ip_address",
                                 "client_user_agent", "fbc", "fbp"),
              Destination.GOOGLE: ("email_address", "phone_number", "gclid", "gbraid",
                                   "wbraid")}


def _outcomes() -> list[tuple[str, str]]:
    return [("processed", ""), ("skipped", "tombstone"),
            *(("dead_lettered", reason) for reason in dead_letter_reasons())]


class SenderMetrics(RuntimeMetrics):
    """Implements ``processor.stages.sender.ports.SenderSensor``."""

    def __init__(self, audiences: Iterable[tuple[str, Iterable[Destination]]],
                 registry: CollectorRegistry | None = None, liveness_timeout: float = 60.0,
                 clock: Clock | None = None) -> None:
        super().__init__("conversions", _outcomes(), registry, liveness_timeout, clock)
        self._requests = self.counter("requests", "Requests to the ad platforms, by "
                                      "destination and HTTP status (or timeout, "
                                      "connection_error).", ("destination", "status"))
        self._request_seconds = self.histogram("request_duration_seconds", "Ad platform "
                                               "request latency.", ("destination",),
                                               REQUEST_BUCKETS)
        self._batch = self.histogram("batch_size", "Conversions per request.",
                                     ("destination",), BATCH_BUCKETS)
        self._sent = self.counter("sent", "Results by destination, audience and status "
                                  "(accepted, duplicate, rejected, skipped).",
                                  ("destination", "audience", "status"))
        self._reasons = self.counter("send_reasons", "Results other than a plain "
                                     "acceptance, by destination, status and reason.",
                                     ("destination", "status", "reason"))
        self._keys = self.counter("match_keys", "Match keys sent with delivered "
                                  "conversions, by destination and key (divide by "
                                  "conversions_sent_total for the share: a proxy of match "
                                  "quality).", ("destination", "key"))
        self._delayed = self.counter("delayed", "Conversions put on the delay topic, by "
                                     "destination and reason.", ("destination", "reason"))
        self._retries = self.counter("send_retries", "Batches scheduled again, by "
                                     "destination and reason (throttled, transient).",
                                     ("destination", "reason"))
        self._pending = self.gauge("pending", "Conversions not yet answered (batching, in "
                                   "flight, or waiting on the delay topic), by destination.",
                                   ("destination",))
        self._circuit = self.gauge("send_circuit_state", "Circuit breaker per destination: "
                                   "0 closed, 1 half-open, 2 open.", ("destination",))
        self._stopped = self.gauge("destination_stopped", "1 when a destination refused the "
                                   "credentials or a permission and the sender stopped.",
                                   ("destination",))
        for audience, destinations in audiences:
            for destination in destinations:
                for status in Status:
                    self._sent.labels(destination.value, audience, status.value)
        for destination in Destination:
            name = destination.value
            self._pending.labels(name)
            self._circuit.labels(name)
            self._stopped.labels(name)
            for key in MATCH_KEYS[destination]:
                self._keys.labels(name, key)
            for reason in ("throttled", "transient"):
                self._retries.labels(name, reason)
        for reason in ("click_too_recent", "too_recent"):
            self._delayed.labels(Destination.GOOGLE.value, reason)

    def request(self, destination: str, status: str, seconds: float, events: int) -> None:
        self._requests.labels(destination, status).inc()
        self._request_seconds.labels(destination).observe(seconds)
        self._batch.labels(destination).observe(events)

    def retry(self, destination: str, reason: str) -> None:
        self._retries.labels(destination, reason).inc()

    def circuit(self, destination: str, state: int) -> None:
        self._circuit.labels(destination).set(state)

    def sent(self, counts: dict[tuple[str, str, str], int]) -> None:
        for labels, n in counts.items():
            self._sent.labels(*labels).inc(n)

    def reasons(self, counts: dict[tuple[str, str, str], int]) -> None:
        for labels, n in counts.items():
            self._reasons.labels(*labels).inc(n)

    def match_keys(self, counts: dict[tuple[str, str], int]) -> None:
        for labels, n in counts.items():
            self._keys.labels(*labels).inc(n)

    def delayed(self, counts: dict[tuple[str, str], int]) -> None:
        for labels, n in counts.items():
            self._delayed.labels(*labels).inc(n)

    def pending(self, counts: dict[str, int]) -> None:
        for destination, n in counts.items():
            self._pending.labels(destination).set(n)

    def stopped(self, destination: str) -> None:
        self._stopped.labels(destination).set(1)
