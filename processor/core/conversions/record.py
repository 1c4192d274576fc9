"""The record of the conversions topic: one entry, ready to send to each destination.
Written here (``build_record``) and read back here by the sender (``read_record``), so
the two sides of ``schemas/conversion.schema.json`` live in one module.

It carries everything a sender needs and nothing it must not see: the destination
fields from the audience, the clicks attached at build time, the browser context for
Meta, and match keys already hashed per platform (``schemas/conversion.schema.json``
documents every field). Raw emails, phones and names never get here: the match keys
are hashes made by ``matching``, and the page URL has lost its query.

Parts for a platform the audience does not send to are left out, so a Google-only
audience never carries Meta's keys or cookies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from processor.core.conversions.audiences import KEY_PATTERN, Audience
from processor.core.conversions.clicks import GOOGLE_TYPES, Attached, Click, ClickType
from processor.core.conversions.destinations import GoogleDestination, MetaDestination
from processor.core.conversions.entries import Entry
from processor.core.conversions.matching import MatchKeys
from processor.core.conversions.timestamps import rfc3339
from processor.core.conversions.visits import Visit

RECORD_VERSION = 1
SCHEMA = "conversion.schema.json"


def _click(click: Click) -> dict[str, Any]:
    return {"type": click.type.value, "value": click.value,
            "observed_at_ms": click.observed_at_ms}


def meta_action_source(meta: MetaDestination, visit: Visit | None) -> str:
    """The action source sent: Meta requires a user agent and a page URL for
    ``website``, so without them the event goes as ``system_generated``."""
    if meta.action_source == "website" and (
            visit is None or visit.user_agent is None or visit.page_url is None):
        return "system_generated"
    return meta.action_source


def _destinations(audience: Audience, visit: Visit | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if audience.meta is not None:
        meta = audience.meta.model_dump(exclude_none=True)
        meta["action_source"] = meta_action_source(audience.meta, visit)
        found["meta"] = meta
    if audience.google is not None:
        found["google"] = audience.google.model_dump(exclude_none=True)
    return found


def _clicks(audience: Audience, attached: Attached) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if audience.google is not None and attached.google is not None:
        found["google"] = _click(attached.google)
    if audience.meta is not None:
        if attached.fbc is not None:
            source = "cookie" if attached.fbc_source is ClickType.FBC else "fbclid"
            found["fbc"] = {**_click(attached.fbc), "source": source}
        if attached.fbp is not None:
            found["fbp"] = _click(attached.fbp)
    return found


def _context(visit: Visit | None) -> dict[str, str]:
    if visit is None:
        return {}
    fields = {"client_ip_address": visit.ip, "client_user_agent": visit.user_agent,
              "event_source_url": visit.page_url}
    return {name: value for name, value in fields.items() if value is not None}


def _matching(audience: Audience, keys: MatchKeys) -> dict[str, dict[str, str]]:
    found = {}
    if audience.meta is not None:
        found["meta"] = dict(sorted(keys.meta.items()))
    if audience.google is not None:
        found["google"] = dict(sorted(keys.google.items()))
    return found


def build_record(entry: Entry, audience: Audience, *, user_id: str | None,
                 anonymous_id: str | None, clicks: Attached, visit: Visit | None,
                 keys: MatchKeys) -> dict[str, Any]:
    """The conversions-topic record of ``entry`` (a JSON-ready dict). ``clicks`` come from
    ``ClickSet.attach`` at build time, ``keys`` are the person's hashed match keys."""
    if entry.audience != audience.key:
        raise ValueError(f"entry of {entry.audience!r} built with audience {audience.key!r}")
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "conversion_id": entry.event_id,
        "audience": entry.audience,
        "person_key": entry.person_key,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "entry_ts": entry.ts,
        "conversion_time": rfc3339(entry.ts),
        "destinations": _destinations(audience, visit),
        "clicks": _clicks(audience, clicks),
        "matching": _matching(audience, keys),
    }
    if audience.meta is not None:
        record["context"] = _context(visit)
    return record


# --- reading it back (the sender) -------------------------------------------------------

_ID = re.compile(r"cbc_[0-9a-f]{32}")
_AUDIENCE = re.compile(KEY_PATTERN.strip("^$"))
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VALUE = re.compile(r"\S+")
_NON_EMPTY = re.compile(r".+", re.DOTALL)
_FBC = re.compile(r"fb\.[0-2]\.\d{13}\.\S+")
_URL = re.compile(r"https?://.*", re.DOTALL)
_REQUIRED = ("v", "conversion_id", "audience", "person_key", "user_id", "anonymous_id",
             "entry_ts", "conversion_time", "destinations", "clicks", "matching")
_META_KEYS = frozenset({"em", "ph", "fn", "ln", "external_id"})
_GOOGLE_KEYS = frozenset({"email_address", "phone_number"})
_CONTEXT = frozenset({"client_ip_address", "client_user_agent", "event_source_url"})
_REQUIRED_FIELDS = {"meta": ("pixel_id", "event_name", "action_source"),
                    "google": ("api", "customer_id", "conversion_action_id")}


class UnreadableRecord(ValueError):
    """The value is not a conversions-topic record; the message says which field."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """A conversions-topic record as the sender uses it."""

    conversion_id: str
    audience: str
    person_key: str
    user_id: str | None
    anonymous_id: str | None
    entry_ts: int
    conversion_time: str
    meta: MetaDestination | None
    google: GoogleDestination | None
    google_click: Click | None
    fbc: Click | None
    fbp: Click | None
    context: Mapping[str, str]
    meta_keys: Mapping[str, str]
    google_keys: Mapping[str, str]


def _fail(where: str, what: str) -> UnreadableRecord:
    return UnreadableRecord(f"{where}: {what}")


def _object(value: Any, where: str, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    if allowed is not None and not set(value) <= allowed:
        raise _fail(where, f"unknown field {sorted(set(value) - allowed)[0]!r}")
    return value


def _text(value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _fail(where, "is not a string of the documented form")
    return value


def _integer(value: Any, where: str) -> int:
    # JSON Schema's integer is any number without a fraction, 1.0 included.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(where, "must be an integer")
    return value


def _destination(raw: dict[str, Any], name: str) -> MetaDestination | GoogleDestination | None:
    if name not in raw:
        return None
    where = f"destinations.{name}"
    fields = _object(raw[name], where)
    missing = [f for f in _REQUIRED_FIELDS[name] if f not in fields]
    if missing:
        raise _fail(where, f"{missing[0]} is required")
    model = MetaDestination if name == "meta" else GoogleDestination
    try:
        parsed = model.model_validate(fields)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        raise _fail(f"{where}.{field}", str(problem["msg"])) from None
    # The models also accept what a config file may write (123-456-7890, numbers for
    # ids, false for 0); a record carries the canonical form only, so anything else is
    # refused.
    if not _same(parsed.model_dump(exclude_none=True), fields):
        raise _fail(where, "is not in its canonical form")
    return parsed


def _same(ours: Any, theirs: Any) -> bool:
    """Equal as JSON values: a boolean is not a number (250 and 250.0 are the same)."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs) and ours == theirs
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_same(v, theirs[k])
                                                    for k, v in ours.items())
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(_same, ours, theirs))
    return bool(ours == theirs)


def _read_click(raw: dict[str, Any], name: str, types: tuple[str, ...],
           value: re.Pattern[str] = _VALUE, sourced: bool = False) -> Click | None:
    if name not in raw:
        return None
    where = f"clicks.{name}"
    allowed = {"type", "value", "observed_at_ms", *(("source",) if sourced else ())}
    fields = _object(raw[name], where, frozenset(allowed))
    if sourced and fields.get("source") not in ("fbclid", "cookie"):
        raise _fail(f"{where}.source", "must be fbclid or cookie")
    kind = _text(fields.get("type"), f"{where}.type")
    if kind not in types:
        raise _fail(f"{where}.type", f"must be one of {', '.join(types)}")
    return Click(ClickType(kind), _text(fields.get("value"), f"{where}.value", value),
                 _integer(fields.get("observed_at_ms"), f"{where}.observed_at_ms"))


def _keys(raw: dict[str, Any], name: str, allowed: frozenset[str]) -> dict[str, str]:
    keys = _object(raw.get(name, {}), f"matching.{name}", allowed)
    return {k: _text(v, f"matching.{name}.{k}", _SHA256) for k, v in keys.items()}


def read_record(value: Any) -> Conversion:
    """The conversion in ``value`` (the JSON-decoded record); ``UnreadableRecord`` names
    the first field that does not follow ``schemas/conversion.schema.json``."""
    record = _object(value, "the record", frozenset({*_REQUIRED, "context"}))
    missing = [f for f in _REQUIRED if f not in record]
    if missing:
        raise _fail(missing[0], "is required")
    if record["v"] != RECORD_VERSION or isinstance(record["v"], bool):
        raise _fail("v", f"must be {RECORD_VERSION}")
    ids = {f: record[f] for f in ("user_id", "anonymous_id")}
    for field, given in ids.items():
        if given is not None:
            _text(given, field)
    destinations = _object(record["destinations"], "destinations",
                           frozenset({"meta", "google"}))
    if not destinations:
        raise _fail("destinations", "must name at least one destination")
    meta, google = _destination(destinations, "meta"), _destination(destinations, "google")
    clicks = _object(record["clicks"], "clicks", frozenset({"google", "fbc", "fbp"}))
    context = _object(record.get("context", {}), "context", _CONTEXT)
    for field, given in context.items():
        _text(given, f"context.{field}", _URL if field == "event_source_url" else None)
    matching = _object(record["matching"], "matching", frozenset({"meta", "google"}))
    return Conversion(
        conversion_id=_text(record["conversion_id"], "conversion_id", _ID),
        audience=_text(record["audience"], "audience", _AUDIENCE),
        person_key=_text(record["person_key"], "person_key", _NON_EMPTY),
        user_id=ids["user_id"], anonymous_id=ids["anonymous_id"],
        entry_ts=_integer(record["entry_ts"], "entry_ts"),
        conversion_time=_text(record["conversion_time"], "conversion_time", _TIME),
        meta=meta if isinstance(meta, MetaDestination) else None,
        google=google if isinstance(google, GoogleDestination) else None,
        google_click=_read_click(clicks, "google", tuple(t.value for t in GOOGLE_TYPES)),
        fbc=_read_click(clicks, "fbc", ("fbc",), _FBC, sourced=True),
        fbp=_read_click(clicks, "fbp", ("fbp",)),
        context=context,
        meta_keys=_keys(matching, "meta", _META_KEYS),
        google_keys=_keys(matching, "google", _GOOGLE_KEYS))


