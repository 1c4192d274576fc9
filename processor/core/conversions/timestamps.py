"""Instants as events and traits carry them: ISO-8601 strings or epoch numbers.

Segment's ``timestamp`` fields are ISO-8601 strings; CRM traits such as ``mql_at``
are either ISO-8601 strings or epoch numbers in seconds or milliseconds. A number of
at least 10^11 is taken as milliseconds: as seconds it would be past the year 5000,
as milliseconds it is after March 1973.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache

_MS_THRESHOLD = 100_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# datetime's range, so that every accepted instant can also be written as RFC 3339.
_MIN_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
_MAX_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC).timestamp() * 1000)


class BadTimestampError(ValueError):
    """The value is present but is not an instant this module can read."""


def epoch_ms(value: object) -> int:
    """Milliseconds since the epoch for an ISO-8601 string or an epoch number (s or ms).

    A string without an offset is read as UTC. Booleans, non-finite numbers, strings
    that are not ISO-8601 and instants outside years 1..9999 raise ``BadTimestampError``.
    """
    if isinstance(value, bool):
        raise BadTimestampError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadTimestampError("not a finite number")
        scaled = value if abs(value) >= _MS_THRESHOLD else value * 1000
        # Rounded to microseconds first: 1732000000.123 * 1000 is 1732000000122.9999...
        ms = math.floor(round(scaled, 3))
    elif isinstance(value, str):
        # An event's clicks and its browser context are stamped from the same
        # ``timestamp``: read once. Only what could be a timestamp is kept.
        ms = _known_iso_ms(value) if len(value) <= 40 else _iso_ms(value)
    else:
        raise BadTimestampError(f"a {type(value).__name__} is not a timestamp")
    if not _MIN_MS <= ms <= _MAX_MS:
        raise BadTimestampError("outside years 1 to 9999")
    return ms


def _iso_ms(value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise BadTimestampError("not an ISO-8601 timestamp") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH  # exact, unlike the float of datetime.timestamp()
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_known_iso_ms = lru_cache(maxsize=256)(_iso_ms)  # a refusal is raised again each time


def epoch_seconds(value: object) -> int:
    """``epoch_ms`` floored to whole seconds (the precision of a conversion's time)."""
    return epoch_ms(value) // 1000


def rfc3339(seconds: int) -> str:
    """``seconds`` since the epoch as an RFC 3339 UTC text: ``2026-11-20T10:00:00Z``."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
