"""Entries: when a person's traits make them enter an audience, and which conversion it is.

A conversion fires when a person enters an audience, and an entry is identified by
the audience's event timestamp (``mql_at``), not by the criteria flipping: timestamps
do not change state, so a status that goes Lead -> MQL -> Lead -> MQL with the same
``mql_at`` is one conversion, and a new ``mql_at`` is a new one. The bound
(``within``) is the backfill guard: an entry whose timestamp is older than the bound
is never sent, so bulk CRM updates and replays of old identifies send nothing.

Memberships (one per audience and timestamp) are the dedup state. Once a timestamp
is older than the bound plus a day, the guard alone blocks it and its membership is
dropped, so this state is bounded by the bound itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

from processor.core.conversions.audiences import Audience
from processor.core.conversions.criteria import Verdict
from processor.core.conversions.timestamps import BadTimestampError, epoch_seconds

DEFAULT_FUTURE_SKEW = 300
"""How far ahead of now (seconds) an event timestamp may be: clocks disagree a little."""
PRUNE_MARGIN = 86_400
"""How long past its bound a membership is kept (seconds)."""


class MembershipState(StrEnum):
    PENDING = "pending"  # entered; the conversion is still to be written to the outbox
    EMITTED = "emitted"  # written to the outbox
    SUPPRESSED = "suppressed"  # entered too long ago: never sent


class Outcome(StrEnum):
    """What one evaluation of one audience did; all but ``entered`` and ``exited`` are
    reasons for counting a skip."""

    ENTERED = "entered"
    EXITED = "exited"
    NOT_MATCHED = "not_matched"
    ALREADY_ENTERED = "already_entered"
    STALE_ENTRY = "stale_entry"
    FUTURE_TIMESTAMP = "future_timestamp"
    NO_TIMESTAMP = "no_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    CRITERIA_ERROR = "criteria_error"


@dataclass(frozen=True, slots=True)
class Membership:
    """A person's entry into one audience at one event timestamp."""

    ts: int
    event_id: str
    state: MembershipState
    exited: bool = False

    def with_state(self, state: MembershipState) -> Membership:
        return replace(self, state=state)

    def to_json(self) -> list[Any]:
        """Compact store form: ``[ts, event_id, state, exited]``."""
        return [self.ts, self.event_id, self.state.value, self.exited]

    @classmethod
    def from_json(cls, data: Any) -> Membership | None:
        """The membership from ``to_json``'s form, or None when ``data`` does not fit it."""
        if not (isinstance(data, list) and len(data) == 4 and type(data[0]) is int
                and isinstance(data[1], str) and isinstance(data[3], bool)):
            return None
        try:
            state = MembershipState(data[2])
        except ValueError:
            return None
        return cls(data[0], data[1], state, data[3])


@dataclass(frozen=True, slots=True)
class Entry:
    """A new conversion: who entered which audience, when, under which id."""

    audience: str
    person_key: str
    ts: int
    event_id: str


class Decision(NamedTuple):
    outcome: Outcome
    memberships: Mapping[int, Membership]  # the audience's, after the decision and pruning
    entry: Entry | None  # set for ``entered`` only
    changed: bool  # whether ``memberships`` differ from those given (a store write)


def conversion_id(audience_key: str, person_key: str, ts: int) -> str:
    """The conversion's id: the same entry always gets the same id (Meta's ``event_id``,
    Google's order or transaction id), and, being a hash, it carries no personal data."""
    digest = hashlib.sha256(f"{audience_key}\x1f{person_key}\x1f{ts}".encode())
    return "cbc_" + digest.hexdigest()[:32]


def person_key(user_id: Any, anonymous_id: Any) -> str | None:
    """Whom an identify is about: the userId, else the anonymousId (non-empty strings)."""
    for candidate in (user_id, anonymous_id):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def prune(memberships: Mapping[int, Membership], within: int,
          now: float) -> dict[int, Membership]:
    """Without the memberships whose timestamp is older than ``within`` plus a day."""
    oldest = now - within - PRUNE_MARGIN
    return {ts: m for ts, m in memberships.items() if ts >= oldest}


def _timestamp(traits: Mapping[str, Any], trait: str) -> int | Outcome:
    value = traits.get(trait)
    if value is None:
        return Outcome.NO_TIMESTAMP
    try:
        return epoch_seconds(value)
    except BadTimestampError:
        return Outcome.BAD_TIMESTAMP


def decide(audience: Audience, person: str, traits: Mapping[str, Any],
           memberships: Mapping[int, Membership], now: float,
           skew: int = DEFAULT_FUTURE_SKEW) -> Decision:
    """Evaluate ``audience`` for ``person``'s merged ``traits`` at ``now`` (epoch seconds),
    given the person's ``memberships`` of this audience (by timestamp)."""
    verdict = audience.criteria.verdict(traits)
    ts = _timestamp(traits, audience.timestamp_trait)
    current = dict(memberships)
    outcome: Outcome
    entry = None
    if verdict is not Verdict.MATCH:
        outcome = (Outcome.CRITERIA_ERROR if verdict is Verdict.CRITERIA_ERROR
                   else Outcome.NOT_MATCHED)
        member = current.get(ts) if isinstance(ts, int) else None
        if member is not None and not member.exited:
            current[member.ts] = replace(member, exited=True)
            if verdict is Verdict.NO_MATCH:
                outcome = Outcome.EXITED
    elif isinstance(ts, Outcome):
        outcome = ts
    elif ts > now + skew:
        outcome = Outcome.FUTURE_TIMESTAMP
    elif (member := current.get(ts)) is not None:
        outcome = Outcome.ALREADY_ENTERED
        if member.exited:  # back in with the same timestamp: no new conversion
            current[ts] = replace(member, exited=False)
    else:
        event_id = conversion_id(audience.key, person, ts)
        if ts < now - audience.within:
            outcome = Outcome.STALE_ENTRY
            current[ts] = Membership(ts, event_id, MembershipState.SUPPRESSED)
        else:
            outcome = Outcome.ENTERED
            current[ts] = Membership(ts, event_id, MembershipState.PENDING)
            entry = Entry(audience.key, person, ts, event_id)
    kept = prune(current, audience.within, now)
    return Decision(outcome, kept, entry, kept != dict(memberships))


def memberships_to_json(memberships: Mapping[int, Membership]) -> list[list[Any]]:
    """One audience's memberships in store form, oldest first."""
    return [m.to_json() for _, m in sorted(memberships.items())]


def memberships_from_json(data: Any) -> dict[int, Membership]:
    """One audience's memberships from ``memberships_to_json``'s form; entries that do not
    fit it are left out."""
    if not isinstance(data, list):
        return {}
    found = (Membership.from_json(item) for item in data)
    return {m.ts: m for m in found if m is not None}
