"""Events written in the Confluent wire format, into one reused buffer."""

from __future__ import annotations

import copy
from collections.abc import Callable
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from processor.adapters.avro.datum import enriched_to_datum, traits_datum, traits_repaired
from processor.adapters.avro.registry import Registry, subject_for
from processor.adapters.avro.schemas import (
    ENRICHED_SCHEMA,
    WIRE_HEADER,
    enriched_parts,
    parsed_schema,
    schema_text,
)


def _write(buffer: BytesIO, schema: dict[str, Any], datum: Any,
           repair: Callable[[Any], Any] | None = None) -> None:
    """Append ``datum``; if it does not fit the schema, append ``repair(datum)`` instead."""
    start = buffer.tell()
    try:
        schemaless_writer(buffer, schema, datum)
    except (ValueError, TypeError, AttributeError):
        if repair is None:
            raise
        buffer.seek(start)
        buffer.truncate()
        schemaless_writer(buffer, schema, repair(datum))


class AvroWriter:
    """Events in the Confluent wire format, under a TopicNameStrategy subject per topic.

    The general writer (producers of ``identify.avsc`` in the demo and the tests use it);
    the stage's output goes through ``EnrichedWriter``."""

    def __init__(self, registry: Registry, *, schema: str,
                 to_datum: Callable[[dict[str, Any]], dict[str, Any]],
                 auto_register: bool = True) -> None:
        self._registry = registry
        self._name = schema
        self._schema = parsed_schema(schema)
        self._to_datum = to_datum
        self._auto_register = auto_register
        self._headers: dict[str, bytes] = {}
        self._buffer = BytesIO()

    def register(self, topic: str) -> int:
        """Register (or look up) the schema for ``topic`` now; ``encode`` would do it on
        first use, but at start an error is a clear message rather than a failed record."""
        schema_id = self._registry.register(subject_for(topic), schema_text(self._name),
                                            auto_register=self._auto_register)
        self._headers[topic] = WIRE_HEADER.pack(0, schema_id)
        return schema_id

    def _start(self, topic: str) -> BytesIO:
        """The reused buffer, emptied, holding the wire format's header for ``topic``."""
        header = self._headers.get(topic)
        if header is None:
            self.register(topic)
            header = self._headers[topic]
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        buffer.write(header)
        return buffer

    def prepare(self, traits: dict[str, Any]) -> Any:
        return traits

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        buffer = self._start(topic)
        schemaless_writer(buffer, self._schema, self._to_datum(event))
        return buffer.getvalue()


class PreparedTraits:
    """Output traits already written as an ``EnrichedTraits`` record (see ``EnrichedParts``)."""

    __slots__ = ("encoded",)

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


class EnrichedWriter(AvroWriter):
    """The stage's output, ``identify-enriched.avsc``: traits are written once per email by
    ``prepare`` and spliced into each event between its head and its tail."""

    def __init__(self, registry: Registry, *, auto_register: bool = True) -> None:
        super().__init__(registry, schema=ENRICHED_SCHEMA, to_datum=enriched_to_datum,
                         auto_register=auto_register)
        self._parts = enriched_parts()
        self._scratch = BytesIO()
        self._tail_names = tuple(field["name"] for field in self._parts.tail["fields"])
        self._tail: tuple[tuple[Any, ...], bytes] | None = None  # last values, their bytes

    def prepare(self, traits: dict[str, Any]) -> PreparedTraits:
        scratch = self._scratch
        scratch.seek(0)
        scratch.truncate()
        _write(scratch, self._parts.traits, traits_datum(traits), traits_repaired)
        return PreparedTraits(scratch.getvalue())

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        traits = event["traits"]
        if not isinstance(traits, PreparedTraits):
            traits = self.prepare(traits)
        buffer = self._start(topic)
        schemaless_writer(buffer, self._parts.head, event)
        buffer.write(traits.encoded)
        buffer.write(self._tail_bytes(event))
        return buffer.getvalue()

    def _tail_bytes(self, event: dict[str, Any]) -> bytes:
        """The fields after traits (``integrations``, always the same for this stage's
        outputs): written again only when their values differ from the last event's."""
        values = tuple(event.get(name) for name in self._tail_names)
        if self._tail is None or self._tail[0] != values:
            scratch = self._scratch
            scratch.seek(0)
            scratch.truncate()
            schemaless_writer(scratch, self._parts.tail, event)
            self._tail = (copy.deepcopy(values), scratch.getvalue())
        return self._tail[1]


# --- the codec ---------------------------------------------------------------------------
