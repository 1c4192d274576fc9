"""The enrichment stage's own seams: the provider, the codec, the shared cache, its sensor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from processor.core.enrichment.answers import Answer, CacheEntry, LookupResult
from processor.core.records import SourceRecord
from processor.runtime.ports import Sensor


class Provider(Protocol):
    """One enrichment provider. Failures are raised as ``processor.core.errors`` types:
    ``TransientProviderError``, ``RateLimitedError``, ``QuotaExhaustedError``,
    ``ProviderAuthError``, and ``UnusableAnswerError`` for an answer this email's record
    cannot use (not retried, not held against the provider)."""

    name: str

    async def find(self, email: str) -> Answer: ...

    async def aclose(self) -> None: ...


class Lookups(Protocol):
    """The bounded pool that runs lookups off the stage's thread."""

    @property
    def has_completed(self) -> bool: ...
    def start(self) -> None: ...
    def submit(self, emails: list[str]) -> None: ...
    def take_completed(self) -> list[tuple[str, LookupResult]]: ...
    def stop(self, timeout: float = 5.0) -> None: ...


class Codec(Protocol):
    """Bytes to an event object and back (JSON, or Avro with a schema registry)."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        """Raises ``DecodeError`` (or a subclass) for bytes that are not an event."""

    def prepare(self, traits: dict[str, Any]) -> Any:
        """Traits (email included) in the form ``encode`` takes fastest. Done once per
        email and cached, so every later event of that email skips re-encoding them."""

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        """``event["traits"]`` is a value returned by ``prepare``."""


class SharedCache(Protocol):
    """A lookup cache that outlives the process and is shared by the group's replicas."""

    def load(self) -> Iterable[CacheEntry]:
        """Everything remembered so far (called once, before consuming)."""

    def publish(self, entry: CacheEntry) -> None:
        """Remember a new lookup (fire and forget: losing one only costs a lookup)."""

    def updates(self) -> list[CacheEntry]:
        """Entries other replicas published since the last call."""

    def close(self) -> None: ...


class EnrichmentSensor(Sensor, Protocol):
    """The runtime's hooks plus the lookup path's."""

    def cache(self, hits: int, misses: int, coalesced: int) -> None: ...
    def lookup(self, provider: str, status: str, seconds: float) -> None: ...
    def retry(self, provider: str, reason: str) -> None: ...
    def rate_limited_wait(self, seconds: float) -> None: ...
    def circuit(self, provider: str, state: int) -> None: ...
    def quota_exhausted(self, provider: str, exhausted: bool) -> None: ...
    def lookups_in_flight(self, count: int) -> None: ...
