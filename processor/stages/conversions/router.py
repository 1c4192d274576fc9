"""The router: input events to the messages of the two tasks, re-keyed.

Any event with an anonymousId tells the visitor task about its clicks, browser
context and (with a userId too) who the visitor is. An identify also goes to the
person task, keyed by the person, with only the traits the audiences read and
match keys already hashed: no email, phone or name leaves the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor.core.conversions.clicks import ClickSet, extract
from processor.core.conversions.entries import person_key
from processor.core.conversions.matching import Dropped, MatchKeys, touched
from processor.core.conversions.visits import visit_of
from processor.core.errors import InvalidFieldError, MissingIdentityError
from processor.stages.conversions.messages import Identify, Touch


@dataclass(frozen=True, slots=True)
class Routed:
    touch: Touch | None
    identify: Identify | None
    dropped: tuple[Dropped, ...]  # match keys whose raw values were unusable
    clicks: int


def _identity(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # Segment ids are strings, some libraries send numbers
    if not isinstance(value, str):
        raise InvalidFieldError(f"{name} must be a string, not {type(value).__name__}")
    return value


def route(event: Mapping[str, Any], record_ms: int, kept_traits: frozenset[str],
          region: str) -> Routed:
    """The messages one event makes. Raises ``RecordError`` for an identify that names
    nobody or has the wrong types (a dead letter)."""
    anonymous_id = _identity(event, "anonymousId")
    user_id = _identity(event, "userId")
    is_identify = event.get("type") == "identify"
    touch = None
    found = extract(event, record_ms)
    if anonymous_id is not None:
        visit = visit_of(event, record_ms, found[0].observed_at_ms if found else None)
        if found or visit is not None or user_id is not None:
            # extract gives one click per type: nothing to merge.
            touch = Touch(anonymous_id, user_id, ClickSet({c.type: c for c in found}), visit)
    if not is_identify:
        return Routed(touch, None, (), len(found))
    person = person_key(user_id, anonymous_id)
    if person is None:
        raise MissingIdentityError("identify without userId or anonymousId")
    traits = event.get("traits")
    if traits is None:
        traits = {}
    if not isinstance(traits, Mapping):
        raise InvalidFieldError(f"traits must be an object, not {type(traits).__name__}")
    update = MatchKeys().updated(traits, user_id, region)
    kept = {name: traits[name] for name in kept_traits if name in traits}
    message = Identify(person, user_id, anonymous_id, kept, update.keys,
                       touched(traits, user_id))
    return Routed(touch, message, update.dropped, len(found))
