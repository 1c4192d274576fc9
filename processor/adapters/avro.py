"""Avro values with a schema registry: the Confluent wire format, read and written by fastavro.

A value is the magic byte 0, the schema's id in the registry (4 bytes, big-endian), then
the Avro binary encoding of the event with that schema. The schemas are the files in
``schemas/``; ``schemas/README.md`` explains how open-ended data is carried.

* Input (``PROCESSOR_INPUT_FORMAT=avro``): the writer schema of each id is fetched once,
  parsed once and resolved against ``identify.avsc``; the decoded record becomes the dict
  the JSON codec would have produced (nulls left out, JSON texts parsed), so the rest of
  the stage cannot tell the formats apart.
* Output (``PROCESSOR_OUTPUT_FORMAT=avro``): ``identify-enriched.avsc`` is registered once,
  at start, under ``<output topic>-value`` (TopicNameStrategy) with compatibility FULL
  unless the subject has a level of its own; every event is written into one reused buffer.

The registry is asked only at start and for a schema id not seen before (an id always
names the same schema, so a parsed one is kept for the life of the process):

==========================================  =============================================
at start: unreachable, 5xx                  ``FatalError`` (exit 3): try again later
at start: 401/403, wrong URL, 409, 422      ``ConfigError`` (exit 2) naming the variable
an input's schema id: 404 (no such id),     dead letter ``avro_unknown_schema``; the id is
  not Avro, unreadable as an Identify       not asked about again for ``UNKNOWN_ID_TTL``
an input's schema id: unreachable, 5xx,     ``FatalError``: the stage stops, commits nothing
  401/403 (after the client's retries)      from that record on; the next run reads it again
==========================================  =============================================

Good records are never dead-lettered because the registry is down.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import re
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Protocol, cast

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from processor.adapters.json_codec import JsonCodec
from processor.core.errors import (
    AvroBadMagicByteError,
    AvroDecodeError,
    AvroUnknownSchemaError,
    ConfigError,
    FatalError,
)
from processor.core.records import SourceRecord
from processor.entrypoints.settings import Settings
from processor.runtime.ports import Codec

# Authlib (which the registry client imports) warns that plain httpx is deprecated in
# favour of httpx2; that is the client's business, not this stage's, so it is recorded
# here and dropped instead of reaching every log and test run.
# Tests take ``Schema`` and ``SchemaRegistryError`` from here, for the same reason.
with warnings.catch_warnings(record=True):
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _registry_http
    from confluent_kafka.schema_registry.error import SchemaRegistryError

log = logging.getLogger(__name__)

IDENTIFY_SCHEMA = "identify.avsc"
ENRICHED_SCHEMA = "identify-enriched.avsc"
ADDITIONAL = "additional_traits"  # traits without a field of their own, as JSON texts
COMPATIBILITY = "FULL"  # old readers read new outputs, new readers read old ones
UNKNOWN_ID_TTL = 30.0  # seconds before an id the registry did not know is asked about again
_UNKNOWN_IDS_KEPT = 1024
_HEADER = struct.Struct(">bI")
_CLIENT_CONFIG = {"timeout": 5, "max.retries": 3, "retries.wait.ms": 250,
                  "retries.max.wait.ms": 2000}
_NOT_FOUND_CODES = {40403}  # "schema not found", the answer for an unknown id
_PACKAGE = Path(__file__).resolve().parents[1]
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


def _parsed(schema: Any) -> dict[str, Any]:
    return cast(dict[str, Any], parse_schema(schema))


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """A schema file parsed once by fastavro (callers must not change it)."""
    return _parsed(json.loads(schema_text(name)))


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
        return _parsed({"type": "record", "name": name, "namespace": namespace,
                        "fields": fields})

    traits = {"namespace": namespace, **whole["fields"][cut]["type"]}
    return EnrichedParts(part("EnrichedIdentifyHead", whole["fields"][:cut]), _parsed(traits),
                         part("EnrichedIdentifyTail", whole["fields"][cut + 1:]))


@cache
def typed_traits() -> dict[str, Any]:
    """The enriched schema's trait fields (each ``["null", type]``), by name."""
    return {field["name"]: field["type"] for field in enriched_parts().traits["fields"]
            if field["name"] != ADDITIONAL}


# --- events to Avro records and back -----------------------------------------------------

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


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's values."""
    return f"{topic}-value"


def _redacted(url: str) -> str:
    return re.sub(r"//[^/@\s]*@", "//***@", url)


class SchemaRegistry:
    """The few registry calls this stage makes, with the registry's errors translated into
    this package's. Each call uses a client of its own, closed at once: calls are rare (at
    start, and once per new schema id), and no connection outlives them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**_CLIENT_CONFIG, **config}
        self.where = f"SCHEMA_REGISTRY_URL={_redacted(str(config.get('url', '')))}"
        with self._client():  # the client checks its configuration when it is built
            pass

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        config: dict[str, Any] = {"url": settings.schema_registry_url}
        user_info = settings.schema_registry_basic_auth_user_info.get_secret_value()
        if user_info:
            config["basic.auth.user.info"] = user_info
        if settings.schema_registry_ca_location:
            config["ssl.ca.location"] = settings.schema_registry_ca_location
        return cls(config)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        try:
            client = SchemaRegistryClient(self._config)
        except (ValueError, TypeError, OSError) as error:
            raise ConfigError(f"schema registry settings: {error} (SCHEMA_REGISTRY_URL, "
                              "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, "
                              "SCHEMA_REGISTRY_SSL_CA_LOCATION)") from None
        try:
            yield client
        finally:
            client.close()

    def probe(self) -> None:
        """Fail at start, not at the first record, when the registry cannot be used."""
        with self._at_start("reading the global compatibility level"), self._client() as c:
            c.get_compatibility()

    def register(self, subject: str, text: str, *, auto_register: bool = True) -> int:
        """The id of schema ``text`` under ``subject``: registered (auto_register), else
        looked up. A subject without a compatibility level of its own gets ``COMPATIBILITY``."""
        schema = Schema(text, "AVRO")
        with self._client() as client:
            if not auto_register:
                return self._look_up(client, subject, schema)
            with self._at_start(f"reading the compatibility level of {subject}"):
                level = self._compatibility(client, subject)
            if level is None:
                try:
                    with self._at_start(f"setting compatibility {COMPATIBILITY} on {subject}"):
                        client.set_compatibility(subject, COMPATIBILITY)
                    level = COMPATIBILITY
                except ConfigError as error:  # a registry that forbids it: its owners decide
                    log.warning("%s; registering anyway", error)
            with self._at_start(f"registering the output schema under {subject} "
                                f"(compatibility {level or 'as configured'})"):
                schema_id = int(client.register_schema(subject, schema))
        log.info("output schema registered: subject %s, id %d, compatibility %s", subject,
                 schema_id, level or "as configured")
        return schema_id

    def _look_up(self, client: Any, subject: str, schema: Any) -> int:
        with self._at_start(f"looking up the output schema under {subject}"):
            try:
                return int(client.lookup_schema(subject, schema).schema_id)
            except SchemaRegistryError as error:
                if error.http_status_code != 404 or error.error_code not in (40401, 40403):
                    raise
        raise ConfigError(f"the output schema is not registered under {subject} in the "
                          f"schema registry ({self.where}) and SCHEMA_REGISTRY_AUTO_REGISTER "
                          "is false: register schemas/identify-enriched.avsc there first")

    @staticmethod
    def _compatibility(client: Any, subject: str) -> str | None:
        try:
            return str(client.get_compatibility(subject))
        except SchemaRegistryError as error:
            if error.http_status_code == 404:  # no level of its own (or no subject yet)
                return None
            raise

    def writer_schema(self, schema_id: int) -> Any | None:
        """The registry's schema with this id, or None when it says there is none. Raises
        ``FatalError`` when it cannot answer (nothing may be dead-lettered for that)."""
        try:
            with self._client() as client:
                return client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == 404 and error.error_code in _NOT_FOUND_CODES:
                return None
            raise FatalError(f"the schema registry ({self.where}) answered HTTP "
                             f"{error.http_status_code} for schema id {schema_id}: "
                             f"{error.error_message}") from None
        except (_registry_http.TransportError, ValueError, KeyError, TypeError) as error:
            raise FatalError(f"the schema registry ({self.where}) could not be asked for "
                             f"schema id {schema_id}: {type(error).__name__}: {error}") from None

    @contextlib.contextmanager
    def _at_start(self, doing: str) -> Iterator[None]:
        """Registry errors at start as ``ConfigError`` (a human must act) or ``FatalError``
        (the registry is down: a later start may work)."""
        try:
            yield
        except SchemaRegistryError as error:
            status, message = error.http_status_code, error.error_message
            hint = {401: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
                    403: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO and the registry's ACLs",
                    404: "is it the registry's Confluent-compatible API root? (Apicurio: "
                         "<base>/apis/ccompat/v7)",
                    409: "the schema is not compatible with the versions already registered "
                         "under this subject; add optional fields with a null default only",
                    422: "the registry refused the schema as invalid"}.get(status)
            if status >= 500 or status in (408, 429):
                raise FatalError(f"schema registry ({self.where}) failed while {doing}: "
                                 f"HTTP {status}: {message}") from None
            raise ConfigError(f"schema registry ({self.where}) refused {doing}: HTTP {status}: "
                              f"{message}" + (f"; {hint}" if hint else "")) from None
        except _registry_http.TransportError as error:
            raise FatalError(f"schema registry ({self.where}) unreachable while {doing}: "
                             f"{type(error).__name__}: {error}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{self.where} did not answer like a schema registry while "
                              f"{doing} ({type(error).__name__}: {error}); it must be the "
                              "root of a Confluent-compatible REST API") from None


class Registry(Protocol):
    """What readers and writers need of a registry (``SchemaRegistry``, or a test's fake)."""

    def register(self, subject: str, text: str, *, auto_register: bool = True) -> int: ...
    def writer_schema(self, schema_id: int) -> Any | None: ...


# --- reading -----------------------------------------------------------------------------


class AvroReader:
    """Values in the Confluent wire format, decoded into JSON-form events."""

    def __init__(self, registry: Registry, *, schema: str = IDENTIFY_SCHEMA,
                 to_event: Callable[[dict[str, Any]], dict[str, Any]] = identify_from_datum,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        if len(value) < _HEADER.size or value[0] != 0:
            raise AvroBadMagicByteError(
                "value is not in the Confluent Avro wire format (magic byte 0 and a schema "
                f"id): {len(value)} bytes, starting with byte {value[0] if value else None}")
        schema_id = _HEADER.unpack_from(value)[1]
        writer, reader = self._known.get(schema_id) or self._learn(schema_id)
        buffer = BytesIO(value)
        buffer.seek(_HEADER.size)
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
        if known is not None and known[0] > self._clock():
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
            writer = _parsed(json.loads(schema.schema_str))
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
        self._unknown[schema_id] = (self._clock() + UNKNOWN_ID_TTL, why)
        raise AvroUnknownSchemaError(why)


# --- writing -----------------------------------------------------------------------------


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
        self._headers[topic] = _HEADER.pack(0, schema_id)
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


class _Decoder(Protocol):
    def decode(self, record: SourceRecord) -> dict[str, Any]: ...


class _Encoder(Protocol):
    def prepare(self, traits: dict[str, Any]) -> Any: ...
    def encode(self, event: dict[str, Any], topic: str) -> bytes: ...


class FormatCodec:
    """Input values read in one format, output values written in another (or the same)."""

    def __init__(self, decoder: _Decoder, encoder: _Encoder) -> None:
        self._decoder = decoder
        self._encoder = encoder

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        return self._decoder.decode(record)

    def prepare(self, traits: dict[str, Any]) -> Any:
        return self._encoder.prepare(traits)

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        return self._encoder.encode(event, topic)


def codec_for(settings: Settings) -> Codec:
    """The codec ``PROCESSOR_INPUT_FORMAT`` and ``PROCESSOR_OUTPUT_FORMAT`` ask for. With
    Avro on either side the registry is asked now, so that a wrong URL, a refused key or an
    incompatible schema stops the start with a message rather than the first record."""
    json_codec = JsonCodec()
    if settings.input_format == "json" and settings.output_format == "json":
        return json_codec
    registry = SchemaRegistry.from_settings(settings)
    decoder: _Decoder = json_codec
    encoder: _Encoder = json_codec
    if settings.input_format == "avro":
        registry.probe()
        decoder = AvroReader(registry)
    if settings.output_format == "avro":
        writer = EnrichedWriter(registry, auto_register=settings.schema_registry_auto_register)
        writer.register(settings.output_topic)
        encoder = writer
    return FormatCodec(decoder, encoder)
