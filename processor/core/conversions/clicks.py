"""Click IDs: captured from web events, kept newest per type, attached to a conversion.

Ad platforms identify the ad click behind a visit by a query parameter on the landing
URL (``gclid``, ``fbclid``...) and Meta also by its ``_fbc``/``_fbp`` cookies. Values
are case-sensitive and must reach the platform byte for byte, so they are decoded from
the query once and never altered; a value with blanks or control characters (which no
platform issues) is not captured at all.

A click's time is when it was first observed: the event's ``timestamp``, else its
``originalTimestamp``, else the Kafka record's time. Meta's ``fbc`` is built from that
time (``fb.1.<first observed ms>.<fbclid>``), so seeing the same value again keeps it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from processor.core.conversions.timestamps import BadTimestampError, epoch_ms


class ClickType(StrEnum):
    GCLID = "gclid"
    GBRAID = "gbraid"
    WBRAID = "wbraid"
    FBCLID = "fbclid"
    MSCLKID = "msclkid"
    TTCLID = "ttclid"
    LI_FAT_ID = "li_fat_id"
    TWCLID = "twclid"
    DCLID = "dclid"
    FBC = "fbc"
    FBP = "fbp"


QUERY_TYPES = (ClickType.GCLID, ClickType.GBRAID, ClickType.WBRAID, ClickType.FBCLID,
               ClickType.MSCLKID, ClickType.TTCLID, ClickType.LI_FAT_ID, ClickType.TWCLID,
               ClickType.DCLID)
"""Captured from URL queries; those without a destination yet are kept for later ones."""
COOKIE_TYPES = (ClickType.FBC, ClickType.FBP)
"""Meta's cookie values, captured as they are."""
GOOGLE_TYPES = (ClickType.GCLID, ClickType.GBRAID, ClickType.WBRAID)
"""Google takes exactly one of these; on equal times the first in this order."""

DEFAULT_TTL_MS = 90 * 86_400_000
"""How long a click is kept: Google's longest click-through window, and the age of the
_fbc cookie Meta's own parameter builder sets."""
MAX_VALUE_LENGTH = 1024
_QUERY_NAMES = {t.value: t for t in QUERY_TYPES}
_BY_NAME = {t.value: t for t in ClickType}
NAME_OF = {t: t.value for t in ClickType}
"""Each type's name: an enum's .value is ten dict lookups' time."""
_COOKIE_NAMES = tuple((t, t.value) for t in COOKIE_TYPES)
_USABLE = re.compile(r"[^\s\x00-\x1f\x7f]+")
# Meta's format: version.subdomainIndex.creationTime(ms).value (anything else is 2804001).
_META_COOKIE = re.compile(r"fb\.[0-2]\.\d{13}\.\S+")
_ANY_QUERY_NAME = re.compile("|".join(t.value for t in QUERY_TYPES))
_NOTHING: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Click:
    type: ClickType
    value: str
    observed_at_ms: int


def observation_ms(event: Mapping[str, Any], record_time_ms: int) -> int:
    """When ``event`` happened, in ms: ``timestamp``, else ``originalTimestamp``, else the
    record's time."""
    for name in ("timestamp", "originalTimestamp"):
        value = event.get(name)
        if value is not None:
            try:
                return epoch_ms(value)
            except BadTimestampError:
                continue
    return record_time_ms


def _usable(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
        return False
    if value.isascii():  # ASCII that is printable and no space: the pattern, 3x faster
        return value != "" and value.isprintable() and " " not in value
    return _USABLE.fullmatch(value) is not None


def _alters_split(url: str) -> bool:
    """Whether urlsplit's query could differ from the text between the first "?" and the
    first "#" of this ASCII ``url``: it drops tabs and newlines, and refuses some hosts."""
    return "\t" in url or "\r" in url or "\n" in url or "[" in url or "]" in url


def _query_of(source: str, is_url: bool) -> str:
    if not is_url:
        return source.removeprefix("?")
    if source.isascii() and not _alters_split(source):
        # What urlsplit would return here, for a fraction of its cost.
        return source.partition("#")[0].partition("?")[2]
    try:
        return urlsplit(source).query
    except ValueError:  # an unclosed IPv6 bracket, for one
        return ""


def _from_query(query: str, found: dict[ClickType, str]) -> None:
    if _ANY_QUERY_NAME.search(query) is None:
        return  # most page views carry none: skip the parsing
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if not equals or not value:
            continue  # no value (parse_qsl leaves out blank ones too)
        if "%" in name or "+" in name:
            name = _decoded(name)
        kind = _QUERY_NAMES.get(name)
        if kind is None or kind in found:
            continue
        if "%" in value or "+" in value:
            value = _decoded(value)
        if _usable(value):
            found[kind] = value


def _decoded(text: str) -> str:
    """As ``parse_qsl`` decodes a name or a value; "" for an escape that is not UTF-8 (not
    a platform's value, and "" is no click type nor a usable value)."""
    try:
        return unquote(text.replace("+", " "), errors="strict")
    except UnicodeDecodeError:
        return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _NOTHING


def extract(event: Any, record_time_ms: int) -> tuple[Click, ...]:
    """The click IDs ``event`` carries: query parameters of ``context.page.url``,
    ``context.page.search`` and ``properties.url``, and the ``fbc``/``fbp`` cookies from
    ``context.clientIds``, ``properties`` or ``context.traits`` (first place wins).
    Any input is accepted; what is not a usable value is ignored."""
    if not isinstance(event, dict):
        return ()
    found: dict[ClickType, str] = {}
    context = _dict(event.get("context"))
    page = _dict(context.get("page"))
    properties = _dict(event.get("properties"))
    url, search, other = page.get("url"), page.get("search"), properties.get("url")
    # analytics.js sends the same query three times: once is enough, since a query parsed
    # again could only offer the values already taken or refused.
    query = None
    if isinstance(url, str) and url:
        query = _query_of(url, True)
        _from_query(query, found)
    if isinstance(search, str) and search and (again := search.removeprefix("?")) != query:
        _from_query(again, found)
    else:
        again = None
    if (isinstance(other, str) and other and other != url
            and (last := _query_of(other, True)) != query and last != again):
        _from_query(last, found)
    # Where analytics libraries put the cookies: Jitsu, Segment's CAPI mapping, traits.
    for place in (context.get("clientIds"), properties, context.get("traits")):
        if place and isinstance(place, dict):
            for kind, name in _COOKIE_NAMES:
                value = place.get(name)
                if (value is not None and kind not in found and _usable(value)
                        and _META_COOKIE.fullmatch(value)):
                    found[kind] = value
    if not found:
        return ()
    at = observation_ms(event, record_time_ms)
    return tuple([Click(kind, value, at) for kind, value in found.items()])


def _kept(old: Click, new: Click) -> Click:
    if new.value == old.value:  # seen again: the first observation stands
        return old if old.observed_at_ms <= new.observed_at_ms else new
    if new.observed_at_ms != old.observed_at_ms:
        return new if new.observed_at_ms > old.observed_at_ms else old
    return max(old, new, key=lambda c: c.value)  # a fixed choice, whatever the order


class Attached(NamedTuple):
    """The clicks a conversion carries: one for Google, ``fbc`` and ``fbp`` for Meta."""

    google: Click | None
    fbc: Click | None  # type FBC: built from an fbclid, or a cookie value as captured
    fbc_source: ClickType | None  # FBCLID or FBC: where ``fbc`` came from
    fbp: Click | None

    def clicks(self) -> tuple[Click, ...]:
        return tuple(c for c in (self.google, self.fbc, self.fbp) if c is not None)


def fbc_from_fbclid(click: Click) -> Click:
    """Meta's ``fbc`` for an fbclid: ``fb.1.<first observed ms>.<fbclid>`` (subdomain
    index 1, as set server-side)."""
    return Click(ClickType.FBC, f"fb.1.{click.observed_at_ms}.{click.value}",
                 click.observed_at_ms)


@dataclass(frozen=True, slots=True)
class ClickSet:
    """The newest click of each type seen for one visitor (anonymousId) or person."""

    clicks: Mapping[ClickType, Click] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clicks)

    def get(self, kind: ClickType) -> Click | None:
        return self.clicks.get(kind)

    def merged(self, new: Iterable[Click]) -> ClickSet:
        """Per type the newest value wins; the same value again keeps its first time."""
        clicks = dict(self.clicks)
        for click in new:
            old = clicks.get(click.type)
            clicks[click.type] = click if old is None else _kept(old, click)
        return ClickSet(clicks)

    def expire(self, now_ms: int, ttl_ms: int) -> ClickSet:
        """Without the clicks observed more than ``ttl_ms`` before ``now_ms``."""
        oldest = now_ms - ttl_ms
        for click in self.clicks.values():
            if click.observed_at_ms < oldest:
                break
        else:
            return self  # the usual case: nothing to drop, nothing to copy
        return ClickSet({k: c for k, c in self.clicks.items() if c.observed_at_ms >= oldest})

    def attach(self, entry_ts: int, now_ms: int, ttl_ms: int) -> Attached:
        """What a conversion at ``entry_ts`` (seconds) gets: only clicks observed at or
        before it and within ``ttl_ms`` of both it and now. Google gets the newest of
        gclid/gbraid/wbraid (gclid on equal times), never two; Meta the newer of the
        fbclid-built ``fbc`` and the ``fbc`` cookie (the fbclid on equal times), and
        ``fbp``."""
        entry_ms = entry_ts * 1000
        oldest = max(now_ms, entry_ms) - ttl_ms
        usable = {k: c for k, c in self.clicks.items()
                  if oldest <= c.observed_at_ms <= entry_ms}
        google = None
        for kind in GOOGLE_TYPES:
            click = usable.get(kind)
            if click and (google is None or click.observed_at_ms > google.observed_at_ms):
                google = click
        fbc, source = None, None
        if (fbclid := usable.get(ClickType.FBCLID)) is not None:
            fbc, source = fbc_from_fbclid(fbclid), ClickType.FBCLID
        cookie = usable.get(ClickType.FBC)
        if cookie and (fbc is None or cookie.observed_at_ms > fbc.observed_at_ms):
            fbc, source = cookie, ClickType.FBC
        return Attached(google, fbc, source, usable.get(ClickType.FBP))

    def to_json(self) -> dict[str, list[Any]]:
        """Compact store form: ``{"gclid": ["<value>", <observed ms>], ...}``."""
        return {NAME_OF[k]: [c.value, c.observed_at_ms] for k, c in self.clicks.items()}

    @classmethod
    def from_json(cls, data: Any) -> ClickSet:
        """The set from ``to_json``'s form; entries that do not fit it are left out."""
        if not isinstance(data, dict):
            return cls()
        clicks = {}
        for name, entry in data.items():
            kind = _BY_NAME.get(name)
            if (kind is not None and isinstance(entry, list) and len(entry) == 2
                    and _usable(entry[0]) and type(entry[1]) is int):
                clicks[kind] = Click(kind, entry[0], entry[1])
        return cls(clicks)

    @classmethod
    def from_pairs(cls, data: Mapping[str, tuple[str, int]]) -> ClickSet:
        """``from_json`` of an already typed form (``{name: (value, observed ms)}``)."""
        clicks = {}
        for name, (value, observed_at_ms) in data.items():
            kind = _BY_NAME.get(name)
            if kind is not None and _usable(value):
                clicks[kind] = Click(kind, value, observed_at_ms)
        return cls(clicks)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClickSet:
        """The set from ``to_bytes``; bytes that are not such JSON give an empty set."""
        try:
            return cls.from_json(json.loads(data))
        except (ValueError, RecursionError):
            return cls()
