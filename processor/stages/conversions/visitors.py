"""The visitor task: per anonymousId, the clicks it arrived with and who it turned out to be.

A touch merges its clicks (newest per type, first observation kept) and browser
context into the visitor; a touch that also names a userId links the visitor to
that person. Once linked, everything the visitor has, the clicks seen days
before the link included, is forwarded to the person: the historical click IDs.
Later touches are forwarded as they come. Clicks older than the TTL are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from processor.core.conversions.clicks import ClickSet
from processor.core.conversions.visits import Visit
from processor.stages.conversions.messages import Clicks, Merge, Message, Touch, stored_object


@dataclass(frozen=True, slots=True)
class Visitor:
    clicks: ClickSet = field(default_factory=ClickSet)
    visit: Visit | None = None
    user_id: str | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps({"c": self.clicks.to_json(),
                             "x": self.visit.to_json() if self.visit else None,
                             "u": self.user_id})

    @classmethod
    def from_bytes(cls, value: bytes | None) -> Visitor:
        """The stored visitor; a value this version cannot read is an empty visitor."""
        if not value:
            return _NOBODY  # a new visitor, the most common case on the page path
        data = stored_object(value)
        user = data.get("u")
        return cls(ClickSet.from_json(data.get("c")), Visit.from_json(data.get("x")),
                   user if isinstance(user, str) and user else None)


_NOBODY = Visitor()


@dataclass(frozen=True, slots=True)
class Touched:
    """What a touch did: the visitor after it, and the messages for the person task."""

    visitor: Visitor
    changed: bool
    forwards: tuple[Message, ...]
    linked: bool  # this touch made the link
    new_clicks: int


def touch(before: Visitor, message: Touch, now_ms: int, ttl_ms: int) -> Touched:
    # A new visitor (the most common touch) has nothing to merge with nor compare to.
    known = before.clicks
    clicks = (known.merged(message.clicks.clicks.values()) if known else message.clicks
              ).expire(now_ms, ttl_ms)
    visit = message.visit.newer(before.visit) if message.visit else before.visit
    user = message.user_id or before.user_id
    after = Visitor(clicks, visit, user)
    linked = message.user_id is not None and message.user_id != before.user_id
    new_clicks = sum(1 for kind, click in clicks.clicks.items()
                     if known.get(kind) != click) if known else len(clicks)
    forwards: list[Message] = []
    if user is not None and (linked or new_clicks or visit != before.visit):
        forwards.append(Clicks(user, message.anonymous_id, clicks, visit))
    if linked and message.user_id is not None:
        # Whatever the visitor did as an anonymous person (entries) moves to the user.
        forwards.append(Merge(message.anonymous_id, message.user_id))
    return Touched(after, after != before, tuple(forwards), linked, new_clicks)
