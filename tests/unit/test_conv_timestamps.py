"""Instants from events and traits: ISO-8601 strings and epoch numbers in s or ms."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core.conversions.timestamps import (
    BadTimestampError,
    epoch_ms,
    epoch_seconds,
    rfc3339,
)

T0_S = 1_795_168_800  # 2026-11-20T10:00:00Z


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2026-11-20T10:00:00Z", T0_S * 1000),
        ("2026-11-20T10:00:00.123Z", T0_S * 1000 + 123),
        ("2026-11-20T10:00:00.123999Z", T0_S * 1000 + 123),
        ("2026-11-20T12:00:00+02:00", T0_S * 1000),
        (" 2026-11-20T10:00:00 ", T0_S * 1000),  # no offset: UTC
        ("2026-11-20", (T0_S - 10 * 3600) * 1000),
        (T0_S, T0_S * 1000),
        (T0_S + 0.123, T0_S * 1000 + 123),
        (T0_S * 1000, T0_S * 1000),
        (T0_S * 1000 + 999.9, T0_S * 1000 + 999),
        (99_999_999_999, 99_999_999_999_000),  # just below the threshold: seconds
        (100_000_000_000, 100_000_000_000),  # at it: milliseconds
    ],
)
def test_readable_instants(value: Any, ms: int) -> None:
    assert epoch_ms(value) == ms


def test_seconds_are_floored() -> None:
    assert epoch_seconds("2026-11-20T10:00:00.999Z") == T0_S
    assert epoch_seconds(T0_S * 1000 + 999) == T0_S
    assert epoch_seconds(-0.5) == -1


@pytest.mark.parametrize("value", [None, True, False, float("nan"), float("inf"), "",
                                   "yesterday", "1795168800", [T0_S], {"t": T0_S}, 1e20,
                                   "10000-01-01T00:00:00Z"])
def test_unreadable_instants(value: Any) -> None:
    with pytest.raises(BadTimestampError):
        epoch_ms(value)


def test_rfc3339() -> None:
    assert rfc3339(T0_S) == "2026-11-20T10:00:00Z"
    assert rfc3339(epoch_seconds("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00Z"


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_any_value_is_an_instant_or_refused(value: Any) -> None:
    try:
        seconds = epoch_seconds(value)
    except BadTimestampError:
        return
    assert epoch_seconds(rfc3339(seconds)) == seconds
