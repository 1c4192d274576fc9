"""What lookups taught us, per email: remembered here, and optionally shared.

Every paid lookup's answer is kept in a bounded TTL+LRU cache: found records
for ``found_ttl``, "no record" and rejections for ``not_found_ttl``. Found
traits are kept in the codec's prepared form, so an event served from the
cache costs no re-encoding of a hundred traits.

With a ``SharedCache`` (a compacted Kafka topic, see
``processor.adapters.cache_log``) answers also outlive the process and reach
the other replicas of the group: entries are loaded at start, published as
they are learnt, and merged as other replicas publish theirs. Shared entries
are keyed by a hash of the email, so the in-process cache is keyed the same
way when sharing is on; without it, the email itself is the key (no hashing
on the hot path).
"""

from __future__ import annotations

import hashlib
from typing import Any

from processor.core.cache import TTLCache
from processor.core.clock import Clock
from processor.core.enrichment import mapping
from processor.core.enrichment.answers import (
    NOT_FOUND,
    CacheEntry,
    Enriched,
    Found,
    Kind,
    LookupResult,
    NotFound,
    Rejected,
    Remembered,
    kind_of,
)
from processor.core.enrichment.events import output_traits
from processor.core.errors import FatalError, RecordError
from processor.core.redact import redact
from processor.stages.enrichment.ports import Codec, SharedCache


def shared_key(email: str) -> str:
    """The key of an email in a shared cache: a hash, never the address itself."""
    return hashlib.sha256(email.encode()).hexdigest()


class LookupCache:
    def __init__(self, *, cache: TTLCache[Remembered], codec: Codec, clock: Clock,
                 found_ttl: float, not_found_ttl: float,
                 shared: SharedCache | None = None) -> None:
        self._cache = cache
        self._codec = codec
        self._clock = clock
        self._found_ttl = found_ttl
        self._not_found_ttl = not_found_ttl
        self._shared = shared

    def get(self, email: str, now: float | None = None) -> Remembered | None:
        """What is remembered of ``email``; ``now`` (the clock's monotonic time) saves
        reading the clock once per record of a batch."""
        return self._cache.get(shared_key(email) if self._shared else email, now)

    def remember(self, email: str, result: LookupResult) -> Remembered | RecordError | FatalError:
        """Keep a finished lookup's answer; returns what the waiting records get."""
        if isinstance(result, Found):
            traits = mapping.to_traits(result.person, result.company)
            if traits:
                full = output_traits(email, traits)
                value: Remembered = Enriched(self._codec.prepare(full))
                self._keep(email, value, self._found_ttl, full)
                return value
            result = NOT_FOUND
        if isinstance(result, NotFound):
            self._keep(email, NOT_FOUND, self._not_found_ttl)
            return NOT_FOUND
        if isinstance(result, Rejected):
            rejection = Rejected(redact(result.message))
            self._keep(email, rejection, self._not_found_ttl)
            return rejection
        return result  # errors are not remembered: the next event may have better luck

    def _keep(self, email: str, value: Remembered, ttl: float,
              traits: dict[str, Any] | None = None) -> None:
        if self._shared is None:
            self._cache.put(email, value, ttl)
            return
        key = shared_key(email)
        self._cache.put(key, value, ttl)
        message = value.message if isinstance(value, Rejected) else None
        self._shared.publish(CacheEntry(key, kind_of(value), traits, message,
                                        self._clock.time() + ttl))

    # --- sharing ----------------------------------------------------------------------

    def load(self) -> int:
        """At start: everything the shared cache holds that has not expired."""
        return self._merge(self._shared.load()) if self._shared else 0

    def refresh(self) -> int:
        """What other replicas learnt since the last call."""
        return self._merge(self._shared.updates()) if self._shared else 0

    def _merge(self, entries: Any) -> int:
        now = self._clock.time()
        merged = 0
        for entry in entries:
            ttl = entry.expires_at - now
            if ttl <= 0:
                continue
            value: Remembered
            if entry.kind is Kind.FOUND and isinstance(entry.traits, dict):
                value = Enriched(self._codec.prepare(entry.traits))
            elif entry.kind is Kind.NOT_FOUND:
                value = NOT_FOUND
            elif entry.kind is Kind.REJECTED:
                value = Rejected(entry.message or "")
            else:
                continue
            self._cache.put(entry.key, value, ttl)
            merged += 1
        return merged

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
