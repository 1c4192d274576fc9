"""The seams between the pipeline and the world: each adapter implements one of these.

The pipeline and the lookup pool import only these Protocols, never
``confluent_kafka``, ``httpx`` or ``prometheus_client``; the composition root
(``processor.entrypoints.bootstrap``) decides which concrete adapter stands behind each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from processor.core.offsets import TopicPartition
from processor.core.records import Headers, SourceRecord

DeliveryCallback = Callable[[Any, Any], None]  # (error or None, delivered message)


# --- what a provider answers -------------------------------------------------


class Found(NamedTuple):
    """A record exists: Clearbit-shaped person and company objects (either may be None)."""

    person: Any
    company: Any


class NotFound(NamedTuple):
    """No record for this email (404, or found with neither person nor company)."""


class Queued(NamedTuple):
    """The provider is looking it up asynchronously (202): ask again later."""


class Rejected(NamedTuple):
    """The provider will never accept this email (422): a permanent, per-record failure."""

    message: str


Answer = Found | NotFound | Queued | Rejected


class Provider(Protocol):
    """One enrichment provider. Failures are raised as ``processor.core.errors`` types:
    ``TransientProviderError``, ``RateLimitedError``, ``QuotaExhaustedError``,
    ``ProviderAuthError``."""

    name: str

    async def find(self, email: str) -> Answer: ...

    async def aclose(self) -> None: ...


# --- Kafka ---------------------------------------------------------------------


class Sink(Protocol):
    """Where outputs and dead letters go."""

    failures: list[str]  # deliveries the broker refused for good, as reported by poll/flush

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        on_delivery: DeliveryCallback | None,
    ) -> None: ...

    def poll(self, timeout: float) -> None:
        """Serve delivery callbacks."""

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still outstanding."""

    def close(self) -> None: ...


class TransactionalSink(Sink, Protocol):
    """A sink that can also commit outputs and input offsets atomically."""

    def begin(self) -> None: ...

    def commit_transaction(self, positions: Mapping[TopicPartition, int], group_metadata: Any,
                           timeout: float) -> None:
        """Raises ``DeliveryError`` when aborted (rewind and go on), ``FatalError`` otherwise."""

    def abort(self, timeout: float) -> None: ...


RebalanceCallback = Callable[[list[TopicPartition]], None]


class Source(Protocol):
    """Where input records come from: a consumer group member."""

    paused: bool

    def subscribe(self, topic: str, on_assign: RebalanceCallback,
                  on_revoke: RebalanceCallback, on_lost: RebalanceCallback) -> None: ...
    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord]: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def store(self, positions: Mapping[TopicPartition, int]) -> None:
        """Positions for the background commit (at-least-once)."""
    def commit(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Synchronous commit; False when the broker refused."""
    def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    def seek(self, positions: Mapping[TopicPartition, int]) -> None: ...
    def group_metadata(self) -> Any: ...
    def close(self) -> None: ...


class Codec(Protocol):
    """Bytes to an event object and back (JSON, or Avro with a schema registry)."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        """Raises ``DecodeError`` (or a subclass) for bytes that are not an event."""

    def prepare(self, traits: dict[str, Any]) -> Any:
        """Traits (email included) in the form ``encode`` takes fastest. Done once per
        email and cached, so every later event of that email skips re-encoding them."""

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        """``event["traits"]`` is a value returned by ``prepare``."""


class CacheEntry(NamedTuple):
    """One remembered lookup, as shared between replicas and restarts."""

    key: str  # a hash of the normalised email, never the email itself
    kind: str  # "found", "not_found" or "rejected"
    traits: dict[str, Any] | None  # found: the traits, email included
    message: str | None  # rejected: why
    expires_at: float  # wall clock, seconds since the epoch


class SharedCache(Protocol):
    """A lookup cache that outlives the process and is shared by the group's replicas."""

    def load(self) -> Iterable[CacheEntry]:
        """Everything remembered so far (called once, before consuming)."""

    def publish(self, entry: CacheEntry) -> None:
        """Remember a new lookup (fire and forget: losing one only costs a lookup)."""

    def updates(self) -> list[CacheEntry]:
        """Entries other replicas published since the last call."""

    def close(self) -> None: ...


# --- observation ---------------------------------------------------------------


class Sensor(Protocol):
    """Everything the pipeline reports; the Prometheus adapter turns it into metrics.

    Hooks take counts so the hot path can report once per batch, not per record.
    """

    def consumed(self, count: int) -> None: ...
    def outcomes(self, counts: dict[tuple[str, str], int]) -> None:
        """Counts by (outcome, reason); reason is "" for enriched."""
    def cache(self, hits: int, misses: int, coalesced: int) -> None: ...
    def lookup(self, provider: str, status: str, seconds: float) -> None: ...
    def retry(self, provider: str, reason: str) -> None: ...
    def rate_limited_wait(self, seconds: float) -> None: ...
    def circuit(self, provider: str, state: int) -> None: ...
    def quota_exhausted(self, provider: str, exhausted: bool) -> None: ...
    def lookups_in_flight(self, count: int) -> None: ...
    def buffered(self, records: int, paused: bool) -> None: ...
    def end_to_end(self, seconds: Sequence[float]) -> None: ...
    def produce_error(self) -> None: ...
    def dead_letters_trimmed(self, counts: dict[str, int]) -> None:
        """Dead letters that left out part of the original to fit their topic, by reason."""
    def committed(self, ok: bool, wall_time: float) -> None: ...
    def lag(self, lags: dict[tuple[str, int], int]) -> None:
        """The full current set: partitions missing from it are no longer ours."""
    def state(self, alive: bool, ready: bool) -> None: ...
