"""Durations as people write them in settings and audiences: ``7d``, ``36h``, ``6d23h``, ``30s``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[dhms])+", re.ASCII)
_PART = re.compile(r"(\d+)([dhms])", re.ASCII)


def parse_duration(text: str) -> int:
    """Whole seconds in ``text``: one or more ``<digits><unit>``, units d, h, m, s, in any order.

    Raises ``ValueError`` with a message that shows the expected form.
    """
    compact = text.strip()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration like 7d, 36h, 6d23h or 30s")
    total = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    if total <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return total


def format_duration(seconds: int) -> str:
    """``seconds`` written back as the shortest ``parse_duration`` text (for messages)."""
    parts = []
    remaining = seconds
    for unit, size in _UNIT_SECONDS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
