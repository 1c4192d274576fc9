"""The entry rules, one test each: what enters, what does not and why, and the ids."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core.conversions.audiences import Audience, parse_audiences
from processor.core.conversions.entries import (
    DEFAULT_FUTURE_SKEW,
    Decision,
    Entry,
    Membership,
    MembershipState,
    Outcome,
    conversion_id,
    decide,
    memberships_from_json,
    memberships_to_json,
    person_key,
    prune,
)
from processor.core.conversions.timestamps import rfc3339

DAY = 86_400
NOW = 1_795_168_800.25  # 2026-11-20T10:00:00.25Z
TS = 1_795_168_800 - 2 * DAY  # two days ago, inside a 7-day bound
PERSON = "user-1"
AUDIENCE = parse_audiences("""
version: 1
audiences:
  - key: mql_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations: {meta: {pixel_id: "1", event_name: Lead}}
""").audiences[0]


def mql(at: Any = TS, lifecycle: str = "MQL", **more: Any) -> dict[str, Any]:
    traits = {"lifecycle": lifecycle, **more}
    if at is not None:
        traits["mql_at"] = at
    return traits


def run(traits: dict[str, Any], memberships: dict[int, Membership] | None = None,
        now: float = NOW, audience: Audience = AUDIENCE, **kwargs: Any) -> Decision:
    return decide(audience, PERSON, traits, memberships or {}, now, **kwargs)


def expected_id(audience: str, person: str, ts: int) -> str:
    text = audience + "\x1f" + person + "\x1f" + str(ts)
    return "cbc_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def test_criteria_true_inside_the_bound_is_one_entry() -> None:
    decision = run(mql(rfc3339(TS)))
    assert decision.outcome is Outcome.ENTERED
    assert decision.entry == Entry("mql_7d", PERSON, TS, expected_id("mql_7d", PERSON, TS))
    assert decision.memberships == {
        TS: Membership(TS, expected_id("mql_7d", PERSON, TS), MembershipState.PENDING)}
    assert decision.changed


def test_the_same_timestamp_again_is_nothing_new() -> None:
    first = run(mql())
    again = run(mql(), dict(first.memberships))
    assert again.outcome is Outcome.ALREADY_ENTERED
    assert again.entry is None
    assert again.memberships == first.memberships
    assert not again.changed


def test_the_same_instant_written_differently_is_the_same_timestamp() -> None:
    first = run(mql(TS))
    for same in (TS * 1000 + 999, rfc3339(TS)[:-1] + ".999Z", float(TS) + 0.5):
        assert run(mql(same), dict(first.memberships)).outcome is Outcome.ALREADY_ENTERED


def test_a_new_timestamp_inside_the_bound_is_a_new_different_conversion() -> None:
    first = run(mql(TS))
    second = run(mql(TS + 3600), dict(first.memberships))
    assert second.outcome is Outcome.ENTERED
    assert second.entry is not None
    assert first.entry is not None
    assert second.entry.event_id != first.entry.event_id
    assert set(second.memberships) == {TS, TS + 3600}


def test_a_timestamp_older_than_the_bound_is_a_stale_entry() -> None:
    stale_ts = int(NOW) - 7 * DAY - 1
    decision = run(mql(stale_ts))
    assert decision.outcome is Outcome.STALE_ENTRY
    assert decision.entry is None
    assert decision.memberships[stale_ts].state is MembershipState.SUPPRESSED
    assert run(mql(stale_ts), dict(decision.memberships)).outcome is Outcome.ALREADY_ENTERED
    # far older than the bound: no state is kept at all
    ancient = run(mql("2020-01-01T00:00:00Z"))
    assert ancient.outcome is Outcome.STALE_ENTRY
    assert ancient.memberships == {}
    assert not ancient.changed


def test_the_bound_is_inclusive() -> None:
    now = 1_795_168_800
    edge = now - AUDIENCE.within
    assert run(mql(edge), now=now).outcome is Outcome.ENTERED
    assert run(mql(edge - 1), now=now).outcome is Outcome.STALE_ENTRY


@pytest.mark.parametrize(("at", "outcome"), [
    (None, Outcome.NO_TIMESTAMP),
    ("", Outcome.BAD_TIMESTAMP),
    ("last tuesday", Outcome.BAD_TIMESTAMP),
    (True, Outcome.BAD_TIMESTAMP),
    ({"at": TS}, Outcome.BAD_TIMESTAMP),
    (float("nan"), Outcome.BAD_TIMESTAMP),
])
def test_missing_or_unparsable_timestamps(at: Any, outcome: Outcome) -> None:
    decision = run(mql(at))
    assert decision.outcome is outcome
    assert decision.entry is None
    assert decision.memberships == {}


def test_future_timestamps_beyond_the_skew() -> None:
    assert DEFAULT_FUTURE_SKEW == 300
    assert run(mql(int(NOW) + 300)).outcome is Outcome.ENTERED
    assert run(mql(int(NOW) + 301)).outcome is Outcome.FUTURE_TIMESTAMP
    assert run(mql(int(NOW) + 301), skew=600).outcome is Outcome.ENTERED
    assert run(mql(int(NOW) + 301)).memberships == {}


def test_criteria_false_marks_the_membership_for_the_current_timestamp_exited() -> None:
    entered = run(mql(TS))
    other = run(mql(TS + 60), dict(entered.memberships))
    exited = run(mql(TS, lifecycle="SQL"), dict(other.memberships))
    assert exited.outcome is Outcome.EXITED
    assert exited.entry is None
    assert exited.memberships[TS].exited
    assert exited.memberships[TS].state is MembershipState.PENDING  # a send is not undone
    assert not exited.memberships[TS + 60].exited
    back = run(mql(TS), dict(exited.memberships))
    assert back.outcome is Outcome.ALREADY_ENTERED  # a boolean flip cannot re-fire
    assert back.entry is None
    assert not back.memberships[TS].exited


def test_criteria_false_without_a_membership_changes_nothing() -> None:
    decision = run(mql(TS, lifecycle="Lead"))
    assert decision.outcome is Outcome.NOT_MATCHED
    assert decision.memberships == {}
    assert not decision.changed


def test_a_missing_criteria_trait_is_false_never_a_crash() -> None:
    entered = run(mql(TS))
    decision = run({"mql_at": TS}, dict(entered.memberships))
    assert decision.outcome is Outcome.CRITERIA_ERROR
    assert decision.memberships[TS].exited


def test_ids_are_deterministic_and_distinct() -> None:
    assert conversion_id("mql_7d", PERSON, TS) == expected_id("mql_7d", PERSON, TS)
    assert conversion_id("mql_7d", PERSON, TS) == conversion_id("mql_7d", PERSON, TS)
    ids = {conversion_id(a, p, t) for a in ("a", "b") for p in ("u1", "u2") for t in (1, 2)}
    assert len(ids) == 8
    assert len(conversion_id("a", "b", 1)) == 36


def test_person_key_is_the_user_id_else_the_anonymous_id() -> None:
    assert person_key("u1", "anon") == "u1"
    assert person_key(None, "anon") == "anon"
    assert person_key("", "anon") == "anon"
    assert person_key(7, None) is None
    assert person_key(None, None) is None


def test_memberships_are_pruned_once_older_than_the_bound_plus_a_day() -> None:
    oldest_kept = int(NOW) - 8 * DAY + 1
    book = {ts: Membership(ts, "id", MembershipState.EMITTED)
            for ts in (oldest_kept, oldest_kept - 2, TS)}
    assert set(prune(book, AUDIENCE.within, NOW)) == {oldest_kept, TS}
    decision = run(mql(TS), book)
    assert set(decision.memberships) == {oldest_kept, TS}
    assert decision.changed


def test_store_form_round_trips_and_skips_what_does_not_fit() -> None:
    book = dict(run(mql(TS)).memberships)
    book[TS + 1] = Membership(TS + 1, "cbc_x", MembershipState.EMITTED, exited=True)
    assert memberships_from_json(memberships_to_json(book)) == book
    assert memberships_to_json(book)[0] == [TS, book[TS].event_id, "pending", False]
    junk = [[1, "id", "nope", False], [1.5, "id", "pending", False], "x", [2, "id", "emitted"],
            [3, "id", "emitted", False]]
    assert memberships_from_json(junk) == {3: Membership(3, "id", MembershipState.EMITTED)}
    assert memberships_from_json({"not": "a list"}) == {}
    assert book[TS].with_state(MembershipState.EMITTED).state is MembershipState.EMITTED


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(), children, max_size=3), max_leaves=10)


@given(st.dictionaries(st.sampled_from(["lifecycle", "mql_at"]) | st.text(), json_values),
       st.floats(min_value=0, max_value=4e9))
def test_any_traits_give_a_decision(traits: dict[str, Any], now: float) -> None:
    decision = run(traits, now=now)
    assert (decision.entry is not None) is (decision.outcome is Outcome.ENTERED)
