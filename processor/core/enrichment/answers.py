"""One vocabulary for what a lookup can conclude, from the provider's answer to the cache.

A provider answers ``Found`` (raw person and company objects), ``NotFound``,
``Queued`` (ask again later) or ``Rejected`` (never for this email). Once a
``Found`` is mapped to traits it becomes ``Enriched``; ``NotFound`` and
``Rejected`` are remembered as they are. ``Kind`` names the remembered ones
where they are written down (the shared cache's records).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from processor.core.errors import FatalError, RecordError


class Kind(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"


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


class Enriched(NamedTuple):
    """A found record mapped to output traits (email included), as the codec prepared them."""

    traits: Any


class CacheEntry(NamedTuple):
    """One remembered lookup, as shared between replicas and restarts."""

    key: str  # a hash of the normalised email, never the email itself
    kind: Kind
    traits: dict[str, Any] | None  # found: the traits, email included
    message: str | None  # rejected: why
    expires_at: float  # wall clock, seconds since the epoch


Answer = Found | NotFound | Queued | Rejected
# What a finished lookup hands back: an answer, or the error that ended it.
LookupResult = Found | NotFound | Rejected | RecordError | FatalError
# What the cache keeps per email.
Remembered = Enriched | NotFound | Rejected
NOT_FOUND = NotFound()


def kind_of(value: Remembered) -> Kind:
    if isinstance(value, Enriched):
        return Kind.FOUND
    return Kind.NOT_FOUND if isinstance(value, NotFound) else Kind.REJECTED
