"""Segment Identify events: what is enrichable, what is skipped, what is dead-lettered.

``classify`` takes one decoded event (a JSON object) and answers with a
``LookupRequest``, a ``SkipReason``, or raises a ``RecordError`` subclass. The
checks run in this order, so that the cheapest reason wins and no event that
asks not to be enriched is ever dead-lettered for an unrelated flaw:

1. ``type`` must be a string; anything but ``"identify"`` is skipped;
2. ``integrations`` (if present) must be an object; this destination turned
   off there means skip;
3. ``userId`` / ``anonymousId`` must be strings when present, and at least one
   must be there;
4. ``traits`` (if present) must be an object; no ``email`` in it means skip;
5. ``email`` must be a string holding a syntactically valid address.

Validation is hand-written rather than a model class because it runs once per
event on the hot path, where a few type checks cost far less than a validator.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, NamedTuple

from processor.core.enrichment import emails
from processor.core.enrichment.outcomes import SkipReason
from processor.core.errors import (
    InvalidEmailError,
    InvalidFieldError,
    MissingIdentityError,
)

DESTINATION = "Clearbit Enrichment"
DESTINATION_ALIAS = "Clearbit"

# Output messageIds are uuid5(namespace, input messageId): deterministic, so
# reprocessing an input yields the same output id, and never equal to the input.
_MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c2a4e-3b5d-5e8f-9a0b-1c2d3e4f5a6b")

_NAMESPACE_BYTES = _MESSAGE_ID_NAMESPACE.bytes
# A hex digit with its top two bits set to the variant's 10.
_VARIANT = {digit: f"{int(digit, 16) & 0x3 | 0x8:x}" for digit in "0123456789abcdef"}

OUTPUT_INTEGRATIONS = {DESTINATION: False}


class LookupRequest(NamedTuple):
    """An identify event worth enriching."""

    email: str  # normalised: the lookup and cache key
    user_id: str | None
    anonymous_id: str | None
    message_id: str | None


def _not_a_string(field: str, value: Any) -> InvalidFieldError:
    return InvalidFieldError(f"{field} must be a string, got {type(value).__name__}")


def destination_enabled(integrations: dict[str, Any]) -> bool:
    """Segment's rule for the integrations object, for this destination.

    Off when ``"Clearbit Enrichment"`` or its older alias ``"Clearbit"`` is
    ``false``, or when ``"All"`` is ``false`` and ``"Clearbit Enrichment"`` does
    not turn it back on (``true`` or a settings object).
    """
    named = integrations.get(DESTINATION)
    if named is False or integrations.get(DESTINATION_ALIAS) is False:
        return False
    if integrations.get("All", True) is False:
        return named is True or isinstance(named, dict)
    return True


def classify(event: dict[str, Any]) -> LookupRequest | SkipReason:  # noqa: PLR0912 - inline, hot
    """Decide what to do with one decoded event; raises a ``RecordError`` to dead-letter it."""
    kind = event.get("type")
    if not isinstance(kind, str):
        raise InvalidFieldError("type must be a string" if "type" in event else "type is missing")
    if kind != "identify":
        return SkipReason.NOT_IDENTIFY

    integrations = event.get("integrations")
    if integrations is not None:
        if not isinstance(integrations, dict):
            raise InvalidFieldError("integrations must be an object")
        if integrations and not destination_enabled(integrations):
            return SkipReason.INTEGRATION_DISABLED

    # The three optional strings, checked inline: this runs once per event.
    user_id = event.get("userId")
    if user_id is not None and not isinstance(user_id, str):
        raise _not_a_string("userId", user_id)
    anonymous_id = event.get("anonymousId")
    if anonymous_id is not None and not isinstance(anonymous_id, str):
        raise _not_a_string("anonymousId", anonymous_id)
    if not user_id and not anonymous_id:
        raise MissingIdentityError("identify has neither userId nor anonymousId")
    message_id = event.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise _not_a_string("messageId", message_id)

    traits = event.get("traits")
    if traits is None:
        return SkipReason.NO_EMAIL
    if not isinstance(traits, dict):
        raise InvalidFieldError("traits must be an object")
    raw_email = traits.get("email")
    if raw_email is None or raw_email == "":
        return SkipReason.NO_EMAIL
    if not isinstance(raw_email, str):
        raise InvalidFieldError(f"traits.email must be a string, got {type(raw_email).__name__}")
    email = raw_email.strip().lower()  # emails.normalise, inline on the hot path
    if not email:
        return SkipReason.NO_EMAIL
    if not emails.is_valid(email):
        # The message must not carry the address itself: dead-letter headers are widely read.
        raise InvalidEmailError(
            f"traits.email is not a valid email address ({len(raw_email)} characters)"
        )
    return LookupRequest(email, user_id, anonymous_id, message_id)


def output_message_id(input_message_id: str | None, coordinates: str) -> str:
    """Deterministic id of the enriched event (from the input's messageId, else its offset).

    The same value as ``uuid.uuid5(namespace, seed)``, computed from the SHA-1's hex
    digits directly: UUID objects cost more than the rest of a cached event.
    """
    seed = input_message_id if input_message_id else f"offset:{coordinates}"
    h = hashlib.sha1(_NAMESPACE_BYTES + seed.encode()).hexdigest()  # noqa: S324 - RFC 4122 v5 names, not security
    # Version 5 in the 13th digit; the RFC 4122 variant in the top bits of the 17th.
    return f"clearbit-{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def output_key(record_key: bytes | None, request: LookupRequest) -> bytes | None:
    """The Kafka key of the output: the input's, else the userId, else the anonymousId."""
    if record_key is not None:
        return record_key
    identity = request.user_id or request.anonymous_id
    return identity.encode() if identity else None


def output_traits(email: str, clearbit_traits: dict[str, Any]) -> dict[str, Any]:
    """The traits of the output: the email that was looked up, then the clearbit_ ones."""
    return {"email": email, **clearbit_traits}


def enriched_event(
    request: LookupRequest, traits: Any, message_id: str, timestamp: str
) -> dict[str, Any]:
    """The new Identify event that carries the provider's data.

    ``traits`` is ``output_traits(...)`` as the codec prepared it (see ``Codec.prepare``).
    """
    event: dict[str, Any] = {"type": "identify", "messageId": message_id, "timestamp": timestamp}
    if request.user_id is not None:
        event["userId"] = request.user_id
    if request.anonymous_id is not None:
        event["anonymousId"] = request.anonymous_id
    event["traits"] = traits
    event["integrations"] = OUTPUT_INTEGRATIONS
    return event
