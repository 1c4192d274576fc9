"""Segment events and an audiences file for the conversions stage's tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processor.core.conversions.entries import conversion_id

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


# --- a population with known entries, for the tests that kill, restart and rebalance -----

AUDIENCE = "mql_7d"


@dataclass(frozen=True)
class Population:
    """``entrants`` people who each enter ``mql_7d`` once, and ``others`` who never do
    (half not matching, half matching too long ago). Every ``click_every``-th person of
    either kind first lands anonymously with a gclid and an fbclid; their identify carries
    the anonymousId too, which links that visitor and forwards its clicks.

    Person ``i`` is ``u<i>`` (anonymousId ``a<i>``, gclid ``g<i>``): what each should
    make is known in advance, so every conversion on the outbox can be accounted for.
    """

    entrants: int
    others: int
    now: float
    click_every: int = 3

    @property
    def people(self) -> range:
        return range(self.entrants + self.others)

    def enters(self, i: int) -> bool:
        return i < self.entrants

    def clicked(self, i: int) -> bool:
        return i % self.click_every == 0

    def entry_ts(self, i: int) -> int:
        """Distinct per person, within the audience's 7 days and never in the future."""
        return int(self.now) - 3600 - i

    def expected(self) -> dict[str, str]:
        """The conversion id each entrant must have, to its person."""
        return {conversion_id(AUDIENCE, f"u{i}", self.entry_ts(i)): f"u{i}"
                for i in self.people if self.enters(i)}

    def identify(self, i: int) -> dict[str, Any]:
        if self.enters(i):
            traits: dict[str, Any] = {"lifecycle": "MQL", "mql_at": iso(self.entry_ts(i))}
        elif i % 2:
            traits = {"lifecycle": "Lead", "mql_at": iso(self.entry_ts(i))}
        else:
            traits = {"lifecycle": "MQL", "mql_at": iso(self.now - 30 * DAY - i)}
        return ident(f"u{i}", f"a{i}" if self.clicked(i) else None, **traits)

    def landing(self, i: int) -> dict[str, Any]:
        return page(f"a{i}", f"gclid=g{i}&fbclid=f{i}&utm_source=ads",
                    at=self.entry_ts(i) - 600)

    def pages(self) -> list[tuple[bytes, dict[str, Any]]]:
        return [(f"a{i}".encode(), self.landing(i)) for i in self.people if self.clicked(i)]

    def identifies(self) -> list[tuple[bytes, dict[str, Any]]]:
        return [(f"u{i}".encode(), self.identify(i)) for i in self.people]
