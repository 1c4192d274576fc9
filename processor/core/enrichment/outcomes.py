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


# Dead-letter reason codes are the ``reason`` class attributes of the
# ``RecordError`` subclasses in ``processor.core.errors``; this tuple lists them
# for documentation, metrics pre-registration and the replay filter.
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "not_json",
    "not_an_object",
    "invalid_field",
    "missing_identity",
    "invalid_email",
    "provider_rejected",
    "retries_exhausted",
    "lookup_pending_timeout",
    "avro_bad_magic_byte",
    "avro_unknown_schema",
    "avro_decode_error",
)
