"""What the stage writes on its repartition topics, and reads back.

Every message is a small JSON object with a kind ``k`` and a version ``v``. None
carries an email, a phone number or a name: the router hashes match keys before
anything leaves it, and only the traits the audiences read travel on.

``by-anon`` (key: anonymousId)
    ``touch``: click IDs, browser context and, when the event also had a userId,
    the link to that person.
``by-person`` (key: the person: userId, else anonymousId)
    ``identify``: the traits the audiences read, and hashed match keys;
    ``clicks``: a visitor's clicks and context, forwarded once it is linked;
    ``merge``: an anonymous person is now known as a user: move to it;
    ``memberships``: what a merged anonymous person had entered, ids kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from processor.core.conversions.clicks import ClickSet
from processor.core.conversions.entries import Membership
from processor.core.conversions.matching import MatchKeys
from processor.core.conversions.visits import Visit
from processor.core.records import is_utf8

VERSION = 1


@dataclass(frozen=True, slots=True)
class Touch:
    anonymous_id: str
    user_id: str | None
    clicks: ClickSet
    visit: Visit | None


@dataclass(frozen=True, slots=True)
class Identify:
    person: str
    user_id: str | None
    anonymous_id: str | None
    traits: Mapping[str, Any]  # only those the audiences read; None deletes
    keys: MatchKeys  # the keys this identify sets
    cleared: frozenset[tuple[str, str]]  # every (platform, key) it sets or clears


@dataclass(frozen=True, slots=True)
class Clicks:
    person: str
    anonymous_id: str
    clicks: ClickSet
    visit: Visit | None


@dataclass(frozen=True, slots=True)
class Merge:
    person: str  # the anonymous person
    into: str  # the user it is now known as


@dataclass(frozen=True, slots=True)
class Memberships:
    person: str  # the user
    from_person: str
    memberships: Mapping[str, Mapping[int, Membership]]  # by audience, by timestamp


Message = Touch | Identify | Clicks | Merge | Memberships


def encode(message: Message) -> bytes:
    body: dict[str, Any]
    if isinstance(message, Touch):  # the page path's message: written in one go
        visit = message.visit
        return orjson.dumps({"v": VERSION, "k": "touch", "a": message.anonymous_id,
                             "u": message.user_id, "c": message.clicks.to_json(),
                             "x": visit.to_json() if visit else None})
    if isinstance(message, Identify):
        body = {"k": "identify", "p": message.person, "u": message.user_id,
                "a": message.anonymous_id, "t": dict(message.traits),
                "m": message.keys.to_json(), "cl": sorted(map(list, message.cleared))}
    elif isinstance(message, Clicks):
        body = {"k": "clicks", "p": message.person, "a": message.anonymous_id,
                "c": message.clicks.to_json(),
                "x": message.visit.to_json() if message.visit else None}
    elif isinstance(message, Merge):
        body = {"k": "merge", "p": message.person, "i": message.into}
    else:
        body = {"k": "memberships", "p": message.person, "f": message.from_person,
                "ms": {audience: [m.to_json() for _, m in sorted(by_ts.items())]
                       for audience, by_ts in message.memberships.items()}}
    return orjson.dumps({"v": VERSION, **body})


def stored_object(value: bytes | None) -> dict[str, Any]:
    """A JSON object a store holds; anything else (absent, unreadable) is an empty one,
    so a value written by another version never stops the stage."""
    if not value:
        return {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class UnreadableMessage(ValueError):
    """Not a message this version of the stage wrote."""


def _text(body: Mapping[str, Any], name: str, optional: bool = False) -> Any:
    value = body.get(name)
    if isinstance(value, str) and value:
        return value
    if optional and value is None:
        return None
    raise UnreadableMessage(f"field {name!r} missing or not a string")


class _TouchForm(msgspec.Struct):
    """A touch as ``encode`` writes it. Any other shape, or a value this does not read
    the way orjson does, is left to the general decode, whose verdict stands."""

    v: int
    k: str
    a: str
    u: str | None = None
    c: dict[str, tuple[str, int]] | None = None
    x: tuple[str | None, str | None, str | None, int] | None = None


_TOUCH: msgspec.json.Decoder[_TouchForm] = msgspec.json.Decoder(_TouchForm)
# msgspec does not check the UTF-8 of what it skips (orjson does): ASCII cannot be wrong.
_UNTYPED = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def _touch(value: bytes) -> Touch | None:
    """The touch ``value`` holds, typed by msgspec; None when the general decode must
    judge it. Click values and the visit are checked as the general decode checks them,
    so a record on the internal topic that the stage did not write gets no further."""
    if not is_utf8(value):
        return None
    try:
        form = _TOUCH.decode(value)
    except _UNTYPED:
        return None
    if form.v != VERSION or form.k != "touch" or not form.a or form.u == "":
        return None
    return Touch(form.a, form.u, ClickSet.from_pairs(form.c) if form.c else _NO_CLICKS,
                 Visit.from_fields(*form.x) if form.x else None)


_NO_CLICKS = ClickSet()


_TOUCH_START = b'{"v":%d,"k":"touch",' % VERSION  # how ``encode`` begins a touch


def decode(value: bytes | None) -> Message:
    # The person task's messages go straight to the general decode.
    if value and value.startswith(_TOUCH_START) and (touch := _touch(value)) is not None:
        return touch
    return decode_any(value)


def decode_any(value: bytes | None) -> Message:
    """``decode`` without its typed path for touches: any message, every field checked."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise UnreadableMessage("not JSON") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise UnreadableMessage("not a version-1 message")
    kind = body.get("k")
    if kind == "touch":
        return Touch(_text(body, "a"), _text(body, "u", True), ClickSet.from_json(body.get("c")),
                     Visit.from_json(body.get("x")))
    if kind == "identify":
        traits = body.get("t")
        cleared = body.get("cl")
        return Identify(_text(body, "p"), _text(body, "u", True), _text(body, "a", True),
                        traits if isinstance(traits, dict) else {},
                        MatchKeys.from_json(body.get("m")),
                        frozenset((str(p), str(n)) for p, n in cleared
                                  ) if isinstance(cleared, list) and all(
                            isinstance(c, list) and len(c) == 2 for c in cleared
                        ) else frozenset())
    if kind == "clicks":
        return Clicks(_text(body, "p"), _text(body, "a"), ClickSet.from_json(body.get("c")),
                      Visit.from_json(body.get("x")))
    if kind == "merge":
        return Merge(_text(body, "p"), _text(body, "i"))
    if kind == "memberships":
        raw = body.get("ms")
        found: dict[str, dict[int, Membership]] = {}
        for audience, items in (raw.items() if isinstance(raw, dict) else ()):
            members = (Membership.from_json(item) for item in (items or ()))
            found[str(audience)] = {m.ts: m for m in members if m is not None}
        return Memberships(_text(body, "p"), _text(body, "f"), found)
    raise UnreadableMessage(f"unknown kind {kind!r}")
