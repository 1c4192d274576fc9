"""Match keys: a person's email, phone, names and userId, normalised per ad platform and hashed.

Meta and Google normalise differently before SHA-256, and a hash of a differently
normalised value never matches, so each platform gets its own keys:

* Meta ``user_data``: ``em`` (trimmed, lower case), ``ph`` (E.164 digits without
  ``+``), ``fn``/``ln`` (lower case, no punctuation, NFC), ``external_id`` (userId
  without whitespace, lower case).
* Google ``user_identifiers``: ``email_address`` (lower case, no whitespace; for
  gmail.com and googlemail.com only, no dots and no ``+suffix`` in the local part),
  ``phone_number`` (E.164 with ``+``). Names are not sent to Google.

A value that is already 64 hex digits is taken as a hash made upstream and passed
through (lower-cased). A value that is neither usable nor a hash is dropped, never
hashed, and reported as a ``Dropped`` so that it can be counted. Only hashes leave
this module: the raw values are not kept anywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import phonenumbers


class Platform(StrEnum):
    META = "meta"
    GOOGLE = "google"


class DropReason(StrEnum):
    INVALID_EMAIL = "invalid_email"
    INVALID_PHONE = "invalid_phone"
    INVALID_NAME = "invalid_name"
    INVALID_EXTERNAL_ID = "invalid_external_id"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A value that could not become a match key: which platform, which key, why."""

    platform: Platform
    key: str
    reason: DropReason


DEFAULT_REGION = "US"
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

_HASH = re.compile(r"[0-9a-fA-F]{64}")
_WHITESPACE = re.compile(r"\s+")
# One '@', no blanks, a dotted domain: enough to drop junk ("n/a", "unknown") without
# refusing the internationalised addresses the platforms do hash.
_ADDRESS = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` in UTF-8, as 64 lower-case hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def already_hashed(value: str) -> str | None:
    """``value`` lower-cased when it is 64 hex digits (a SHA-256 made upstream), else None."""
    stripped = value.strip()
    return stripped.lower() if _HASH.fullmatch(stripped) else None


def _address(email: str) -> str | None:
    if len(email) > MAX_EMAIL_LENGTH or not _ADDRESS.fullmatch(email):
        return None
    return email if len(email.partition("@")[0]) <= MAX_LOCAL_LENGTH else None


def meta_email(raw: str) -> str | None:
    """Meta's form of an email: trimmed and lower case; None when it is not an address."""
    return _address(raw.strip().lower())


def google_email(raw: str) -> str | None:
    """Google's form: lower case, all whitespace removed and, for Gmail addresses only,
    the local part without dots and without ``+`` and what follows it."""
    email = _WHITESPACE.sub("", raw.lower())
    local, at, domain = email.rpartition("@")
    if at and domain in GMAIL_DOMAINS:
        email = f"{local.partition('+')[0].replace('.', '')}@{domain}"
    return _address(email)


def e164(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """``raw`` as E.164 (``+16505551212``), national numbers read in ``region``; None when
    the number is not a valid one."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def meta_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """Meta's form: country code and number as digits only (E.164 without ``+``)."""
    number = e164(raw, region)
    return number[1:] if number else None


def google_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """Google's form: E.164 with the ``+``."""
    return e164(raw, region)


def meta_name(raw: str) -> str | None:
    """Meta's form of a first or last name: NFC, lower case, punctuation removed, blanks
    collapsed (``Valéry`` -> ``valéry``, ``O'Brien`` -> ``obrien``); None when empty."""
    text = unicodedata.normalize("NFC", raw).lower()
    text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    text = _WHITESPACE.sub(" ", text).strip()
    return text or None


def meta_external_id(raw: str) -> str | None:
    """Meta's form of ``external_id`` (the userId): whitespace removed, lower case."""
    return _WHITESPACE.sub("", raw).lower() or None


class _Key(NamedTuple):
    platform: Platform
    name: str
    normalise: Callable[[str, str], str | None]
    reason: DropReason


def _regionless(normalise: Callable[[str], str | None]) -> Callable[[str, str], str | None]:
    return lambda raw, _region: normalise(raw)


# Trait names (Segment's spec first, then snake case) -> the keys made from them.
_SOURCES: dict[tuple[str, ...], tuple[_Key, ...]] = {
    ("email",): (
        _Key(Platform.META, "em", _regionless(meta_email), DropReason.INVALID_EMAIL),
        _Key(Platform.GOOGLE, "email_address", _regionless(google_email),
             DropReason.INVALID_EMAIL),
    ),
    ("phone",): (
        _Key(Platform.META, "ph", meta_phone, DropReason.INVALID_PHONE),
        _Key(Platform.GOOGLE, "phone_number", google_phone, DropReason.INVALID_PHONE),
    ),
    ("firstName", "first_name"): (
        _Key(Platform.META, "fn", _regionless(meta_name), DropReason.INVALID_NAME),
    ),
    ("lastName", "last_name"): (
        _Key(Platform.META, "ln", _regionless(meta_name), DropReason.INVALID_NAME),
    ),
}
_EXTERNAL_ID = _Key(Platform.META, "external_id", _regionless(meta_external_id),
                    DropReason.INVALID_EXTERNAL_ID)

SOURCE_TRAITS = frozenset(name for names in _SOURCES for name in names)
"""The traits match keys are made from: never to be stored or written raw."""

META_KEYS = frozenset({"em", "ph", "fn", "ln", "external_id"})
GOOGLE_KEYS = frozenset({"email_address", "phone_number"})


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # phone numbers stored as numbers
    return None


def _hashed(key: _Key, text: str, region: str) -> str | None:
    if (hashed := already_hashed(text)) is not None:
        return hashed
    normalised = key.normalise(text, region)
    return sha256_hex(normalised) if normalised else None


def known_region(region: str) -> bool:
    """True when ``region`` is a region code the phone parser knows (``US``, ``GB``...)."""
    return region in phonenumbers.SUPPORTED_REGIONS


class KeysUpdate(NamedTuple):
    keys: MatchKeys
    dropped: tuple[Dropped, ...]


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """The hashed match keys of one person, per platform (only hashes, never raw values)."""

    meta: Mapping[str, str] = field(default_factory=dict)
    google: Mapping[str, str] = field(default_factory=dict)

    def for_platform(self, platform: Platform) -> Mapping[str, str]:
        return self.meta if platform is Platform.META else self.google

    def updated(self, traits: Mapping[str, Any], user_id: str | None = None,
                region: str = DEFAULT_REGION) -> KeysUpdate:
        """The keys after a (partial) identify: a trait present replaces its keys, a trait
        set to null or blank removes them, an unusable value removes them and is reported,
        a trait absent leaves them as they were. A userId sets ``external_id``."""
        keys = {Platform.META: dict(self.meta), Platform.GOOGLE: dict(self.google)}
        dropped: list[Dropped] = []
        updates: list[tuple[_Key, Any]] = []
        for names, made in _SOURCES.items():
            present = next((n for n in names if n in traits), None)
            if present is not None:
                updates.extend((key, traits[present]) for key in made)
        if isinstance(user_id, str) and user_id:
            updates.append((_EXTERNAL_ID, user_id))
        for key, value in updates:
            target = keys[key.platform]
            target.pop(key.name, None)
            text = _as_text(value)
            if value is None or (text is not None and not text.strip()):
                continue
            if text is not None and (hashed := _hashed(key, text, region)) is not None:
                target[key.name] = hashed
            else:
                dropped.append(Dropped(key.platform, key.name, key.reason))
        return KeysUpdate(MatchKeys(keys[Platform.META], keys[Platform.GOOGLE]),
                          tuple(dropped))

    def to_json(self) -> dict[str, dict[str, str]]:
        """A JSON-ready form for the person store."""
        return {"meta": dict(self.meta), "google": dict(self.google)}

    @classmethod
    def from_json(cls, data: Any) -> MatchKeys:
        """The keys from ``to_json``'s form; anything that is not a known key holding a
        hash is left out, so a corrupt store can never put a raw value on the wire."""
        if not isinstance(data, dict):
            return cls()

        def side(name: str, allowed: frozenset[str]) -> dict[str, str]:
            values = data.get(name)
            if not isinstance(values, dict):
                return {}
            return {k: v for k, v in values.items()
                    if k in allowed and isinstance(v, str) and already_hashed(v) == v}

        return cls(side("meta", META_KEYS), side("google", GOOGLE_KEYS))


def touched(traits: Mapping[str, Any], user_id: str | None = None) -> frozenset[tuple[str, str]]:
    """The (platform, key) pairs an identify with these traits sets or clears: what a
    later merge must replace, whether the new value hashed or was dropped."""
    found = {(key.platform.value, key.name) for names, made in _SOURCES.items()
             if any(n in traits for n in names) for key in made}
    if isinstance(user_id, str) and user_id:
        found.add((_EXTERNAL_ID.platform.value, _EXTERNAL_ID.name))
    return frozenset(found)


def match_keys(traits: Mapping[str, Any], user_id: str | None = None,
               region: str = DEFAULT_REGION) -> KeysUpdate:
    """The match keys of one identify's traits, from nothing."""
    return MatchKeys().updated(traits, user_id, region)
