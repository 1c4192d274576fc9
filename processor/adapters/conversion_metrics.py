"""The conversions stage's metrics (``conversions_...``): the runtime's, and the stage's own.

Labels are bounded: topics and audience keys come from the configuration, click
types, reasons and platforms from fixed vocabularies.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from processor.adapters.runtime_metrics import RuntimeMetrics
from processor.core.clock import Clock
from processor.core.conversions.clicks import ClickType
from processor.core.conversions.entries import Outcome
from processor.core.errors import dead_letter_reasons

RESTORE_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_NOT_SKIPS = (Outcome.ENTERED, Outcome.EXITED, Outcome.NOT_MATCHED)
SKIP_REASONS = (*(o.value for o in Outcome if o not in _NOT_SKIPS), "late_click")


def _outcomes() -> list[tuple[str, str]]:
    return [("routed", ""), ("processed", "visitor"), ("processed", "person"),
            ("skipped", "tombstone"), ("skipped", "nothing_to_do"),
            *(("dead_lettered", reason) for reason in dead_letter_reasons())]


class ConversionMetrics(RuntimeMetrics):
    """Implements ``processor.stages.conversions.ports.ConversionSensor``."""

    def __init__(self, audiences: Iterable[str], stores: Iterable[str],
                 registry: CollectorRegistry | None = None, liveness_timeout: float = 60.0,
                 clock: Clock | None = None) -> None:
        super().__init__("conversions", _outcomes(), registry, liveness_timeout, clock)
        self._by_topic = self.counter("topic_records_consumed",
                                      "Records read, by topic.", ("topic",))
        self._clicks = self.counter("clicks_captured", "Click IDs seen on events, by type.",
                                    ("type",))
        self._links = self.counter("identity_links",
                                   "Visitors (anonymousIds) linked to a userId.")
        self._entries = self.counter("entries", "Audience entries (new conversions), by "
                                     "audience.", ("audience",))
        self._skips = self.counter("skipped", "Evaluations that made no conversion, by "
                                   "audience and reason.", ("audience", "reason"))
        self._dropped = self.counter("match_keys_dropped",
                                     "Matching data left out: the raw value could not be "
                                     "normalised.", ("platform", "reason"))
        self._written = self.counter("written",
                                     "Conversions written to the conversions topic, by "
                                     "audience.", ("audience",))
        self._state = self.gauge("state_records", "Keys in the local stores (estimate), by "
                                 "store.", ("store",))
        self._restore = self.histogram("restore_seconds", "Time to restore a store partition "
                                       "from its changelog.", ("store",), RESTORE_BUCKETS)
        self._restored = self.counter("restored_records", "Changelog records applied while "
                                      "restoring, by store.", ("store",))
        for kind in ClickType:
            self._clicks.labels(kind.value)
        for audience in audiences:
            self._entries.labels(audience)
            self._written.labels(audience)
            for reason in SKIP_REASONS:
                self._skips.labels(audience, reason)
        for store in stores:
            self._state.labels(store)
            self._restored.labels(store)

    def records(self, counts: dict[str, int]) -> None:
        for topic, n in counts.items():
            self._by_topic.labels(topic).inc(n)

    def clicks_captured(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            self._clicks.labels(kind).inc(n)

    def identity_links(self, count: int) -> None:
        self._links.inc(count)

    def entries(self, counts: dict[str, int]) -> None:
        for audience, n in counts.items():
            self._entries.labels(audience).inc(n)

    def skipped(self, counts: dict[tuple[str, str], int]) -> None:
        for (audience, reason), n in counts.items():
            self._skips.labels(audience, reason).inc(n)

    def match_keys_dropped(self, counts: dict[tuple[str, str], int]) -> None:
        for (platform, reason), n in counts.items():
            self._dropped.labels(platform, reason).inc(n)

    def conversions_written(self, counts: dict[str, int]) -> None:
        for audience, n in counts.items():
            self._written.labels(audience).inc(n)

    def restored(self, store: str, records: int, seconds: float) -> None:
        self._restored.labels(store).inc(records)
        self._restore.labels(store).observe(seconds)

    def state_records(self, store: str, records: int) -> None:
        self._state.labels(store).set(records)
