"""The audit record of one send: what the sender did with a conversion for a destination.

One record per (conversion, destination) result goes to the audit topic
(``conversions.sent``, documented by ``schemas/conversion-sent.schema.json``), keyed
``<destination>:<conversion_id>``: on a compacted topic the latest answer per conversion
and destination stays. It carries ids, the platform's answer and the names of the match
keys sent, never a key's value, a click id or a credential.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from processor.core.conversions.record import Conversion
from processor.core.conversions.sending import Api, Destination

SENT_VERSION = 1
SENT_SCHEMA = "conversion-sent.schema.json"


class Status(StrEnum):
    ACCEPTED = "accepted"  # the platform took it
    DUPLICATE = "duplicate"  # the platform already had it: success
    REJECTED = "rejected"  # refused for good; the conversion is in the dead-letter topic
    SKIPPED = "skipped"  # never sent (too old for Meta, nothing to match on)


def sent_key(destination: Destination, conversion_id: str) -> bytes:
    return f"{destination.value}:{conversion_id}".encode()


def sent_record(conversion: Conversion, destination: Destination, api: Api, status: Status,
                *, reason: str, platform_ref: str, match_keys: tuple[str, ...], test: bool,
                sent_at_ms: int, emitted_at_ms: int | None) -> dict[str, Any]:
    """The audit record (a JSON-ready dict)."""
    click = conversion.google_click if destination is Destination.GOOGLE else conversion.fbc
    return {
        "v": SENT_VERSION,
        "conversion_id": conversion.conversion_id,
        "destination": destination.value,
        "api": api.value,
        "audience": conversion.audience,
        "user_id": conversion.user_id,
        "anonymous_id": conversion.anonymous_id,
        "entry_ts": conversion.entry_ts,
        "emitted_at_ms": emitted_at_ms,
        "sent_at_ms": sent_at_ms,
        "status": status.value,
        "reason": reason or None,
        "platform_ref": platform_ref or None,
        "match_keys": list(match_keys),
        "click": None if click is None else {"type": click.type.value,
                                             "observed_at_ms": click.observed_at_ms},
        "test": test,
    }
