"""What can become of one input record, and why.

Every consumed record ends in exactly one of three outcomes, and each skip or
dead letter has a reason code. ``events in = enriched + skipped +
dead-lettered`` is the accounting identity that the tests and the metrics check.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    ENRICHED = "enriched"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"


class SkipReason(StrEnum):
    """Why a record produced nothing at all (counted, never dead-lettered)."""

    NOT_IDENTIFY = "not_identify"
    INTEGRATION_DISABLED = "integration_disabled"
    NO_EMAIL = "no_email"
    NOT_FOUND = "not_found"
    TOMBSTONE = "tombstone"
