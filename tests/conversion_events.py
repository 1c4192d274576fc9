"""Segment events and an audiences file for the conversions stage's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DAY = 86_400

AUDIENCES_YAML = """
version: 1
audiences:
  - key: mql_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations:
      meta: {pixel_id: "1234567890", event_name: Lead}
      google: {customer_id: "1234567890", conversion_action_id: "987654321"}
"""


def iso(seconds: float) -> str:
    """ISO-8601 UTC, as Segment writes timestamps."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def page(anonymous_id: str, query: str, at: float | None = None, **fields: Any
         ) -> dict[str, Any]:
    """An analytics.js page call landing with ``query`` (e.g. ``gclid=...``)."""
    event: dict[str, Any] = {
        "type": "page", "anonymousId": anonymous_id,
        "context": {"page": {"url": f"https://shop.example/landing?{query}",
                             "search": f"?{query}"},
                    "ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)"},
        **fields}
    if at is not None:
        event["timestamp"] = iso(at)
    return event


def ident(user_id: str | None, anonymous_id: str | None = None, at: float | None = None,
          **traits: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "identify", "traits": traits}
    if user_id:
        event["userId"] = user_id
    if anonymous_id:
        event["anonymousId"] = anonymous_id
    if at is not None:
        event["timestamp"] = iso(at)
    return event
