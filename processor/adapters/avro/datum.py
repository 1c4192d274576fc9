"""Events (the JSON codec's dicts) to Avro datums and back."""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson
from fastavro.validation import validate

from processor.adapters.avro.schemas import ADDITIONAL, typed_traits
from processor.core.errors import AvroDecodeError

_IDENTIFY_SCALARS = ("type", "messageId", "timestamp", "originalTimestamp", "sentAt",
                     "receivedAt", "userId", "anonymousId")


def json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer wider than 64 bits, say
        return json.dumps(value)


def _parsed_texts(texts: dict[str, str], where: str) -> dict[str, Any]:
    try:
        return {key: orjson.loads(text) for key, text in texts.items()}
    except orjson.JSONDecodeError as error:
        # The message names a position, never the content.
        raise AvroDecodeError(f"{where} holds a value that is not JSON text: {error}") from None


def identify_from_datum(datum: dict[str, Any]) -> dict[str, Any]:
    """An ``identify.avsc`` record as the JSON form of the event."""
    event = {key: value for key, value in datum.items() if value is not None}
    traits = event.get("traits")
    if traits is not None:
        opened = _parsed_texts(traits[ADDITIONAL], "traits.additional_traits")
        if traits["email"] is not None:
            opened["email"] = traits["email"]
        event["traits"] = opened
    context = event.get("context")
    if context is not None:
        event["context"] = _parsed_texts(context, "context")
    integrations = event.get("integrations")
    if integrations:
        event["integrations"] = {
            name: value if value.__class__ is bool else _parsed_texts(value, "integrations")
            for name, value in integrations.items()}
    return event


def identify_to_datum(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of an Identify as an ``identify.avsc`` record (for producers)."""
    datum: dict[str, Any] = {name: event.get(name) for name in _IDENTIFY_SCALARS}
    traits = event.get("traits")
    if traits is not None:
        datum["traits"] = {"email": traits.get("email"),
                           ADDITIONAL: {k: json_text(v) for k, v in traits.items()
                                        if k != "email"}}
    context = event.get("context")
    if context is not None:
        datum["context"] = {key: json_text(value) for key, value in context.items()}
    integrations = event.get("integrations")
    if integrations is not None:
        datum["integrations"] = {
            name: value if isinstance(value, bool)
            else {key: json_text(setting) for key, setting in value.items()}
            for name, value in integrations.items()}
    return datum


def traits_datum(traits: dict[str, Any]) -> dict[str, Any]:
    """Output traits as an ``EnrichedTraits`` record: traits without a field of their own go
    to ``additional_traits``. A value of the wrong type for its field is moved there by
    ``traits_repaired``, called only when writing failed, so the usual case costs one set
    difference."""
    extra = traits.keys() - typed_traits().keys()
    # An integer beyond 2**53 in a double field would come back changed: it travels as
    # JSON text instead (found by the property test: a latitude of 9007199254740993).
    extra |= {name for name in _double_traits() & traits.keys()
              if isinstance(traits[name], int) and abs(traits[name]) > _EXACT_IN_DOUBLE}
    if not extra:
        return traits  # the writer takes missing fields as null and additional_traits as {}
    carried = dict(traits)  # the writer ignores keys that are not fields
    carried[ADDITIONAL] = {name: json_text(traits[name]) for name in extra}
    for name in extra & _double_traits():
        del carried[name]
    return carried


_EXACT_IN_DOUBLE = 2**53


@functools.cache
def _double_traits() -> frozenset[str]:
    return frozenset(name for name, kind in typed_traits().items()
                     if "double" in (kind if isinstance(kind, list) else [kind]))


def traits_repaired(datum: dict[str, Any]) -> dict[str, Any]:
    """``datum`` with every trait whose value does not fit its field's type moved to
    ``additional_traits`` (a Clearbit answer that changed a field's type, for example)."""
    traits = dict(datum)
    extra = dict(traits.get(ADDITIONAL) or {})
    for name, kind in typed_traits().items():
        value = traits.get(name)
        if value is not None and not validate(value, kind, raise_errors=False):
            extra[name] = json_text(traits.pop(name))
    traits[ADDITIONAL] = extra
    return traits


def enriched_to_datum(event: dict[str, Any]) -> dict[str, Any]:
    """An enriched event (plain traits) as an ``identify-enriched.avsc`` record."""
    return {**event, "traits": traits_datum(event["traits"])}


def enriched_from_datum(datum: dict[str, Any]) -> dict[str, Any]:
    """An ``identify-enriched.avsc`` record as the JSON form of the event (for consumers)."""
    event = {key: value for key, value in datum.items() if value is not None}
    traits = {key: value for key, value in datum["traits"].items()
              if value is not None and key != ADDITIONAL}
    for name, value in _parsed_texts(datum["traits"].get(ADDITIONAL) or {}, ADDITIONAL).items():
        traits.setdefault(name, value)
    event["traits"] = traits
    return event


# --- the registry ------------------------------------------------------------------------


