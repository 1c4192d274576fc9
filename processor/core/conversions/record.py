"""The record written to the conversions topic: one entry, ready to send to each destination.

It carries everything a sender needs and nothing it must not see: the destination
fields from the audience, the clicks attached at build time, the browser context for
Meta, and match keys already hashed per platform (``schemas/conversion.schema.json``
documents every field). Raw emails, phones and names never get here: the match keys
are hashes made by ``matching``, and the page URL has lost its query.

Parts for a platform the audience does not send to are left out, so a Google-only
audience never carries Meta's keys or cookies.
"""

from __future__ import annotations

from typing import Any

from processor.core.conversions.audiences import Audience
from processor.core.conversions.clicks import Attached, Click, ClickType
from processor.core.conversions.destinations import MetaDestination
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
