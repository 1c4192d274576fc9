"""The person task: per person, the traits the audiences read, hashed match keys, the
clicks of every linked visitor, and the audience memberships that make conversions.

Identifies are partial: their traits merge shallowly into what is known (a null
deletes), in arrival order across both identify topics. Each identify evaluates
every audience (``processor.core.conversions.entries.decide``); a new entry is
a pending membership that the stage writes out once the settle delay has passed,
so that clicks still on their way through the visitor task are attached.

An anonymous person (identified by anonymousId only) that is later linked to a
user hands its memberships to that user with their conversion ids, so being
identified never makes a second conversion for the same entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from processor.core.conversions.audiences import Audiences
from processor.core.conversions.clicks import ClickSet
from processor.core.conversions.entries import (
    Entry,
    Membership,
    MembershipState,
    Outcome,
    decide,
    memberships_from_json,
    memberships_to_json,
)
from processor.core.conversions.matching import MatchKeys, Platform
from processor.core.conversions.visits import Visit
from processor.stages.conversions.messages import (
    Clicks,
    Identify,
    Memberships,
    Merge,
    stored_object,
)

MAX_VISITORS = 20  # anonymousIds kept per person (devices, browsers)


@dataclass(frozen=True, slots=True)
class Person:
    traits: Mapping[str, Any] = field(default_factory=dict)
    keys: MatchKeys = field(default_factory=MatchKeys)
    clicks: ClickSet = field(default_factory=ClickSet)
    visit: Visit | None = None
    user_id: str | None = None
    visitors: tuple[str, ...] = ()
    memberships: Mapping[str, Mapping[int, Membership]] = field(default_factory=dict)
    merged_into: str | None = None

    @property
    def anonymous_id(self) -> str | None:
        return self.visitors[-1] if self.visitors else None

    def with_visitor(self, anonymous_id: str | None) -> tuple[str, ...]:
        if not anonymous_id or (self.visitors and self.visitors[-1] == anonymous_id):
            return self.visitors
        kept = (*(v for v in self.visitors if v != anonymous_id), anonymous_id)
        return kept[-MAX_VISITORS:]

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "t": dict(self.traits), "k": self.keys.to_json(), "c": self.clicks.to_json(),
            "x": self.visit.to_json() if self.visit else None, "u": self.user_id,
            "a": list(self.visitors), "i": self.merged_into,
            "m": {a: memberships_to_json(m) for a, m in self.memberships.items() if m}})

    @classmethod
    def from_bytes(cls, value: bytes | None) -> Person:
        """The stored person; a value this version cannot read is an empty person."""
        data = stored_object(value)
        traits, visitors, raw = data.get("t"), data.get("a"), data.get("m")
        user, into = data.get("u"), data.get("i")
        return cls(
            traits if isinstance(traits, dict) else {}, MatchKeys.from_json(data.get("k")),
            ClickSet.from_json(data.get("c")), Visit.from_json(data.get("x")),
            user if isinstance(user, str) else None,
            tuple(v for v in visitors if isinstance(v, str)) if isinstance(visitors, list)
            else (),
            {str(a): memberships_from_json(m) for a, m in raw.items()}
            if isinstance(raw, dict) else {},
            into if isinstance(into, str) else None)


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What one identify did to a person."""

    person: Person
    outcomes: tuple[tuple[str, Outcome], ...]  # (audience, outcome) per audience
    entries: tuple[Entry, ...]  # new pending memberships: schedule them


def merged_traits(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    traits = dict(old)
    for name, value in new.items():
        if value is None:
            traits.pop(name, None)
        else:
            traits[name] = value
    return traits


def merged_keys(old: MatchKeys, message: Identify) -> MatchKeys:
    sides: dict[str, dict[str, str]] = {"meta": dict(old.meta), "google": dict(old.google)}
    for platform, name in message.cleared:
        sides.get(platform, {}).pop(name, None)
    sides["meta"].update(message.keys.for_platform(Platform.META))
    sides["google"].update(message.keys.for_platform(Platform.GOOGLE))
    return MatchKeys(sides["meta"], sides["google"])


def identify(before: Person, message: Identify, audiences: Audiences, now: float,
             skew: int) -> Evaluated:
    person = replace(before, traits=merged_traits(before.traits, message.traits),
                     keys=merged_keys(before.keys, message),
                     user_id=message.user_id or before.user_id,
                     visitors=before.with_visitor(message.anonymous_id))
    memberships = dict(person.memberships)
    outcomes: list[tuple[str, Outcome]] = []
    entries: list[Entry] = []
    for audience in audiences:
        decision = decide(audience, message.person, person.traits,
                          memberships.get(audience.key, {}), now, skew)
        outcomes.append((audience.key, decision.outcome))
        if decision.changed:
            memberships[audience.key] = decision.memberships
        if decision.entry is not None:
            entries.append(decision.entry)
    return Evaluated(replace(person, memberships=memberships), tuple(outcomes),
                     tuple(entries))


@dataclass(frozen=True, slots=True)
class Linked:
    person: Person
    late_clicks: int  # clicks that would have gone with a conversion already written


def clicks(before: Person, message: Clicks, now_ms: int, ttl_ms: int) -> Linked:
    merged = before.clicks.merged(message.clicks.clicks.values()).expire(now_ms, ttl_ms)
    new = [c for kind, c in merged.clicks.items() if before.clicks.get(kind) != c]
    emitted = [m.ts for by_ts in before.memberships.values() for m in by_ts.values()
               if m.state is MembershipState.EMITTED]
    late = sum(1 for c in new if any(c.observed_at_ms <= ts * 1000 for ts in emitted))
    visit = message.visit.newer(before.visit) if message.visit else before.visit
    person = replace(before, clicks=merged, visit=visit,
                     visitors=before.with_visitor(message.anonymous_id))
    return Linked(person, late)


def hand_over(before: Person, message: Merge) -> tuple[Person, Memberships | None]:
    """An anonymous person linked to a user: its memberships go to the user (ids kept);
    it keeps none, so nothing is written out twice under two keys."""
    if before.merged_into == message.into:
        return before, None
    moved = {a: dict(m) for a, m in before.memberships.items() if m}
    after = replace(before, memberships={}, merged_into=message.into)
    return after, Memberships(message.into, message.person, moved) if moved else None


@dataclass(frozen=True, slots=True)
class Adopted:
    person: Person
    pending: tuple[Entry, ...]  # moved memberships still to be written: schedule them
    replaced: tuple[str, ...]  # conversion ids of this person's own entries they replace


def adopt(before: Person, message: Memberships) -> Adopted:
    """Take a merged anonymous person's memberships. For the same audience and
    timestamp the moved membership wins (its id may already be on the outbox), and
    this person's own still-pending entry for it is dropped."""
    memberships = {a: dict(m) for a, m in before.memberships.items()}
    pending: list[Entry] = []
    replaced: list[str] = []
    for audience, moved in message.memberships.items():
        own = memberships.setdefault(audience, {})
        for ts, member in moved.items():
            mine = own.get(ts)
            if mine is not None and mine.event_id == member.event_id:
                continue
            if mine is not None and mine.state is MembershipState.EMITTED:
                continue  # both were written: nothing can take one back
            if mine is not None:
                replaced.append(mine.event_id)
            own[ts] = member
            if member.state is MembershipState.PENDING:
                pending.append(Entry(audience, message.person, ts, member.event_id))
    return Adopted(replace(before, memberships=memberships), tuple(pending), tuple(replaced))


def emitted(before: Person, audience: str, ts: int) -> Person:
    memberships = {a: dict(m) for a, m in before.memberships.items()}
    member = memberships.get(audience, {}).get(ts)
    if member is not None:
        memberships[audience][ts] = member.with_state(MembershipState.EMITTED)
    return replace(before, memberships=memberships)


def pending(person: Person, audience: str, ts: int, event_id: str) -> bool:
    member = person.memberships.get(audience, {}).get(ts)
    return (member is not None and member.event_id == event_id
            and member.state is MembershipState.PENDING)
