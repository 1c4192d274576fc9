"""Values in the Confluent wire format, read into JSON-form events."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from io import BytesIO
from typing import Any, NoReturn, cast

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form

from processor.adapters.avro.datum import identify_from_datum
from processor.adapters.avro.registry import Registry
from processor.adapters.avro.schemas import (
    IDENTIFY_SCHEMA,
    UNKNOWN_ID_TTL,
    WIRE_HEADER,
    parsed,
    parsed_schema,
)
from processor.core.clock import Clock
from processor.core.errors import AvroBadMagicByteError, AvroDecodeError, AvroUnknownSchemaError
from processor.core.records import SourceRecord

log = logging.getLogger(__name__)

_UNKNOWN_IDS_KEPT = 1024


class AvroReader:
    """Values in the Confluent wire format, decoded into JSON-form events."""

    def __init__(self, registry: Registry, *, schema: str = IDENTIFY_SCHEMA,
                 to_event: Callable[[dict[str, Any]], dict[str, Any]] = identify_from_datum,
                 clock: Clock) -> None:
        self._registry = registry
        self._reader = parsed_schema(schema)
        self._reader_form = to_parsing_canonical_form(self._reader)
        self._reader_name = self._reader["name"]
        self._to_event = to_event
        self._clock = clock
        # id -> (writer schema, reader schema or None when the two are the same)
        self._known: dict[int, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        self._unknown: dict[int, tuple[float, str]] = {}  # id -> (ask again after, why)

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        value = record.value() or b""
        if len(value) < WIRE_HEADER.size or value[0] != 0:
            raise AvroBadMagicByteError(
                "value is not in the Confluent Avro wire format (magic byte 0 and a schema "
                f"id): {len(value)} bytes, starting with byte {value[0] if value else None}")
        schema_id = WIRE_HEADER.unpack_from(value)[1]
        writer, reader = self._known.get(schema_id) or self._learn(schema_id)
        buffer = BytesIO(value)
        buffer.seek(WIRE_HEADER.size)
        try:
            datum = cast(dict[str, Any], schemaless_reader(buffer, writer, reader))
        except SchemaResolutionError as error:
            # fastavro's message prints both schemas whole: a line is enough here.
            raise AvroUnknownSchemaError(f"schema id {schema_id} ({writer.get('name')}) cannot "
                                         f"be read as {self._reader_name}: "
                                         f"{str(error)[:120]}...") from None
        except Exception as error:  # noqa: BLE001 - whatever the bytes make fastavro raise
            raise AvroDecodeError(f"value does not decode with schema id {schema_id}: "
                                  f"{type(error).__name__}: {str(error)[:200]}") from None
        if buffer.tell() != len(value):
            raise AvroDecodeError(f"value has {len(value) - buffer.tell()} bytes after the "
                                  f"record written with schema id {schema_id}")
        return self._to_event(datum)

    def _learn(self, schema_id: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        known = self._unknown.get(schema_id)
        if known is not None and known[0] > self._clock.monotonic():
            raise AvroUnknownSchemaError(known[1])
        schema = self._registry.writer_schema(schema_id)
        if schema is None:
            self._forget(schema_id, f"the schema registry has no schema with id {schema_id}")
        kind = (schema.schema_type or "AVRO").upper()
        if kind != "AVRO":
            self._forget(schema_id, f"schema id {schema_id} is a {kind} schema, not Avro")
        if schema.references:
            self._forget(schema_id, f"schema id {schema_id} uses schema references, which "
                                    "this stage does not resolve")
        try:
            writer = parsed(json.loads(schema.schema_str))
        except Exception as error:  # noqa: BLE001 - fastavro's parse errors have no common base
            self._forget(schema_id, f"schema id {schema_id} is not a valid Avro schema: "
                                    f"{type(error).__name__}: {error}")
        same = to_parsing_canonical_form(writer) == self._reader_form
        pair = (writer, None if same else self._reader)
        self._known[schema_id] = pair
        self._unknown.pop(schema_id, None)
        log.info("input schema id %d learnt from the registry (%s)", schema_id,
                 "the stage's own schema" if same else f"resolved to {self._reader_name}")
        return pair

    def _forget(self, schema_id: int, why: str) -> NoReturn:
        """Remember for a while that ``schema_id`` cannot be read, then raise."""
        if len(self._unknown) >= _UNKNOWN_IDS_KEPT:
            self._unknown.pop(next(iter(self._unknown)))
        self._unknown[schema_id] = (self._clock.monotonic() + UNKNOWN_ID_TTL, why)
        raise AvroUnknownSchemaError(why)


# --- writing -----------------------------------------------------------------------------


