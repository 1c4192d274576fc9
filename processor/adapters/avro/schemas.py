"""The schema files in ``schemas/``, found, read and parsed once."""

from __future__ import annotations

import json
import struct
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, cast

from fastavro import parse_schema

from processor.core.errors import ConfigError

IDENTIFY_SCHEMA = "identify.avsc"
ENRICHED_SCHEMA = "identify-enriched.avsc"
ADDITIONAL = "additional_traits"  # traits without a field of their own, as JSON texts
COMPATIBILITY = "FULL"  # old readers read new outputs, new readers read old ones
UNKNOWN_ID_TTL = 30.0  # seconds before an id the registry did not know is asked about again
# The Confluent wire format's header: magic byte 0, then the schema id (big-endian).
WIRE_HEADER = struct.Struct(">bI")
_PACKAGE = Path(__file__).resolve().parents[2]
SCHEMA_FOLDERS = (_PACKAGE / "schemas", _PACKAGE.parent / "schemas")  # installed; repository


# --- the schema files --------------------------------------------------------------------


def schema_path(name: str) -> Path:
    for folder in SCHEMA_FOLDERS:
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"schema file {name} not found in {' or '.join(map(str, SCHEMA_FOLDERS))}")


@cache
def schema_text(name: str) -> str:
    return schema_path(name).read_text(encoding="utf-8")


def parsed(schema: Any) -> dict[str, Any]:
    return cast(dict[str, Any], parse_schema(schema))


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """A schema file parsed once by fastavro (callers must not change it)."""
    return parsed(json.loads(schema_text(name)))


class EnrichedParts(NamedTuple):
    """``identify-enriched.avsc`` cut around its ``traits`` field. An Avro record is its
    fields' encodings one after the other, so head + traits + tail written separately are
    byte for byte the whole record: the traits, the bulk of it, are then written once per
    email (``EnrichedWriter.prepare``) instead of once per event."""

    head: dict[str, Any]  # the fields before traits, as a record
    traits: dict[str, Any]  # the traits record
    tail: dict[str, Any]  # the fields after traits, as a record


@cache
def enriched_parts() -> EnrichedParts:
    whole = json.loads(schema_text(ENRICHED_SCHEMA))
    names = [field["name"] for field in whole["fields"]]
    cut = names.index("traits")
    namespace = whole.get("namespace")

    def part(name: str, fields: list[Any]) -> dict[str, Any]:
        return parsed({"type": "record", "name": name, "namespace": namespace,
                        "fields": fields})

    traits = {"namespace": namespace, **whole["fields"][cut]["type"]}
    return EnrichedParts(part("EnrichedIdentifyHead", whole["fields"][:cut]), parsed(traits),
                         part("EnrichedIdentifyTail", whole["fields"][cut + 1:]))


@cache
def typed_traits() -> dict[str, Any]:
    """The enriched schema's trait fields (each ``["null", type]``), by name."""
    return {field["name"]: field["type"] for field in enriched_parts().traits["fields"]
            if field["name"] != ADDITIONAL}


# --- events to Avro records and back -----------------------------------------------------

