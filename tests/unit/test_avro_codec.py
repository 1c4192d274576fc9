"""The Avro codec with a hand-written registry: wire format, round trips, bad input, the
prepared-traits path, and what the registry's answers do. No network."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.adapters.avro.codec import FormatCodec
from processor.adapters.avro.datum import enriched_from_datum, enriched_to_datum, identify_to_datum
from processor.adapters.avro.reader import AvroReader
from processor.adapters.avro.registry import Schema, subject_for
from processor.adapters.avro.schemas import (
    ADDITIONAL,
    ENRICHED_SCHEMA,
    IDENTIFY_SCHEMA,
    UNKNOWN_ID_TTL,
    parsed_schema,
    schema_text,
)
from processor.adapters.avro.writer import AvroWriter, EnrichedWriter, PreparedTraits
from processor.adapters.json_codec import JsonCodec
from processor.core.enrichment.events import (
    LookupRequest,
    classify,
    enriched_event,
    output_traits,
)
from processor.core.enrichment.mapping import to_traits
from processor.core.enrichment.outcomes import SkipReason
from processor.core.errors import (
    AvroBadMagicByteError,
    AvroDecodeError,
    AvroUnknownSchemaError,
    DecodeError,
    FatalError,
)
from processor.core.records import Record
from processor.devkit.clearbit_records import company_record, person_record
from processor.devkit.samples import identify, person_email
from tests.fakes import FakeClock

OUT = "identify.enriched"
IN = "identify.raw"


class FakeRegistry:
    """Ids handed out in registration order; ``down`` makes every lookup fail as the real
    one does when the registry cannot be reached."""

    def __init__(self) -> None:
        self.schemas: dict[int, Schema] = {}
        self.subjects: dict[str, list[int]] = {}
        self.asked: list[int] = []
        self.down = False

    def add(self, text: str, kind: str = "AVRO") -> int:
        schema_id = 100 + len(self.schemas)
        self.schemas[schema_id] = Schema(text, kind)
        return schema_id

    def register(self, subject: str, text: str, *, auto_register: bool = True) -> int:
        known = [i for i, schema in self.schemas.items() if schema.schema_str == text]
        schema_id = known[0] if known else self.add(text)
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def writer_schema(self, schema_id: int) -> Schema | None:
        self.asked.append(schema_id)
        if self.down:
            raise FatalError("the schema registry could not be asked for schema id "
                             f"{schema_id}: ConnectError")
        return self.schemas.get(schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def avro(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(schema), datum)
    return buffer.getvalue()


def rec(value: bytes | None, offset: int = 0) -> Record:
    return Record(IN, 0, offset, value)


def clearbit_traits(email: str) -> dict[str, Any]:
    domain = email.rpartition("@")[2]
    return output_traits(email, to_traits(person_record(email), company_record(domain)))


def enriched(traits: Any, user_id: str | None = "user-1",
             anonymous_id: str | None = None) -> dict[str, Any]:
    request = LookupRequest("x@y.example", user_id, anonymous_id, "m-1")
    return enriched_event(request, traits, "clearbit-abc", "2026-11-23T09:00:00.000Z")


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def producer(registry: FakeRegistry) -> AvroWriter:
    return AvroWriter(registry, schema=IDENTIFY_SCHEMA, to_datum=identify_to_datum)


# --- input ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    identify("ada@initech.example", user_id="u-1"),
    identify("grace@gmail.com", anonymous_id="anon-1", sentAt="2026-11-23T09:00:01Z",
             context={"page": {"url": "https://x.example/?q=1"}, "locale": "pt-PT"}),
    identify(None, user_id="u-2", integrations={"All": False, "Clearbit Enrichment": True}),
    identify("edsger@hooli.example", user_id="u-3",
             integrations={"All": False, "Clearbit Enrichment": {"plan": "pro", "n": [1, 2]}}),
    {"type": "track", "userId": "u-4"},
    {"type": "identify", "userId": "u-5", "traits": {"address": {"city": "Lisbon"},
                                                     "tags": ["a", None], "score": 1.5}},
], ids=["user", "anonymous+context", "no email", "settings object", "track", "nested traits"])
def test_avro_input_decodes_to_the_json_form(registry: FakeRegistry, producer: AvroWriter,
                                             event: dict[str, Any]) -> None:
    value = producer.encode(event, IN)
    assert registry.subjects == {subject_for(IN): [100]}
    decoded = AvroReader(registry, clock=FakeClock()).decode(rec(value))
    assert decoded == event
    assert classify(decoded) == classify(event)


def test_a_writer_schema_is_asked_for_once(registry: FakeRegistry, producer: AvroWriter) -> None:
    reader = AvroReader(registry, clock=FakeClock())
    for i in range(5):
        reader.decode(rec(producer.encode(identify(f"a{i}@b.example", user_id="u"), IN), i))
    assert registry.asked == [100]


def test_an_evolved_writer_schema_is_resolved_to_the_stages(registry: FakeRegistry) -> None:
    """A producer's newer schema (an extra field, a field dropped that has a default)."""
    schema = json.loads(schema_text(IDENTIFY_SCHEMA))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "context"]
    schema["fields"].append({"name": "writeKey", "type": "string"})
    schema_id = registry.add(json.dumps(schema))
    event = identify("ada@initech.example", user_id="u-1", context={"ip": "203.0.113.1"})
    datum = {**identify_to_datum(event), "writeKey": "wk"}
    value = frame(schema_id, avro(schema, datum))
    decoded = AvroReader(registry, clock=FakeClock()).decode(rec(value))
    assert decoded == {k: v for k, v in event.items() if k != "context"}


def test_the_stages_own_output_read_as_input_is_skipped(registry: FakeRegistry) -> None:
    """The output flowing back into the input topic: the alias makes it readable, and its
    integrations make it a skip, as in JSON."""
    writer = EnrichedWriter(registry)
    value = writer.encode(enriched(clearbit_traits(person_email(1))), IN)
    decoded = AvroReader(registry, clock=FakeClock()).decode(rec(value))
    assert decoded["traits"]["email"] == person_email(1)
    assert classify(decoded) is SkipReason.INTEGRATION_DISABLED


@pytest.mark.parametrize(("value", "error"), [
    (b"", AvroBadMagicByteError),
    (b'{"type": "identify"}', AvroBadMagicByteError),
    (b"\x01\x00\x00\x00\x64rest", AvroBadMagicByteError),
    (b"\x00\x00\x00", AvroBadMagicByteError),
    (b"\x00\x00\x00\x30\x39", AvroUnknownSchemaError),  # id 12345: not in the registry
])
def test_values_not_in_the_wire_format(registry: FakeRegistry, value: bytes,
                                       error: type[DecodeError]) -> None:
    with pytest.raises(error) as raised:
        AvroReader(registry, clock=FakeClock()).decode(rec(value))
    assert raised.value.reason.startswith("avro_")


def test_bytes_that_do_not_decode(registry: FakeRegistry, producer: AvroWriter) -> None:
    reader = AvroReader(registry, clock=FakeClock())
    good = producer.encode(identify("ada@initech.example", user_id="u"), IN)
    for value in (good[:-4], good + b"\x00", good[:5] + b"\x02\xff\xfe", good[:5]):
        with pytest.raises(AvroDecodeError) as raised:
            reader.decode(rec(value))
        assert raised.value.reason == "avro_decode_error"
    datum = identify_to_datum(identify("ada@initech.example", user_id="u"))
    datum["traits"][ADDITIONAL]["plan"] = "{not json"
    with pytest.raises(AvroDecodeError, match="not JSON text"):
        reader.decode(rec(frame(100, avro(parsed_schema(IDENTIFY_SCHEMA), datum))))


def test_schemas_that_cannot_be_read(registry: FakeRegistry) -> None:
    reader = AvroReader(registry, clock=FakeClock())
    other = registry.add(json.dumps({"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"}]}))
    json_schema = registry.add('{"type": "object"}', kind="JSON")
    broken = registry.add('{"type": "record"}')
    for schema_id, says in ((other, "(Order) cannot be read as clearbit_enrichment.Identify"),
                            (json_schema, "JSON schema, not Avro"),
                            (broken, "not a valid Avro schema")):
        value = frame(schema_id, avro({"type": "record", "name": "Order", "fields": [
            {"name": "id", "type": "string"}]}, {"id": "o-1"}))
        with pytest.raises(AvroUnknownSchemaError, match=re.escape(says)):
            reader.decode(rec(value))


def test_unknown_ids_are_asked_about_again_only_after_a_while(registry: FakeRegistry) -> None:
    clock = FakeClock()
    reader = AvroReader(registry, clock=clock)
    value = frame(7, b"\x02")
    for _ in range(3):
        with pytest.raises(AvroUnknownSchemaError):
            reader.decode(rec(value))
    assert registry.asked == [7]
    clock.advance(UNKNOWN_ID_TTL + 1)
    schema_id = registry.add(schema_text(IDENTIFY_SCHEMA))
    assert schema_id == 100
    with pytest.raises(AvroUnknownSchemaError):
        reader.decode(rec(value))
    assert registry.asked == [7, 7]


def test_a_registry_that_cannot_answer_stops_the_stage(registry: FakeRegistry,
                                                       producer: AvroWriter) -> None:
    """Not a dead letter: good records must not be dead-lettered for the registry's outage."""
    value = producer.encode(identify("ada@initech.example", user_id="u"), IN)
    registry.down = True
    with pytest.raises(FatalError):
        AvroReader(registry, clock=FakeClock()).decode(rec(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_only_ever_a_decode_error(body: bytes) -> None:
    registry = FakeRegistry()
    registry.add(schema_text(IDENTIFY_SCHEMA))
    reader = AvroReader(registry, clock=FakeClock())
    for value in (frame(100, body), body):
        try:
            event = reader.decode(rec(value))
        except DecodeError:
            continue
        assert isinstance(event, dict)
        assert isinstance(event["type"], str)


# --- output ---------------------------------------------------------------------------


def read_output(value: bytes, registry: FakeRegistry) -> dict[str, Any]:
    assert value[0] == 0
    schema_id = int.from_bytes(value[1:5], "big")
    writer = parse_schema(json.loads(registry.schemas[schema_id].schema_str))
    buffer = io.BytesIO(value[5:])
    datum = schemaless_reader(buffer, writer)
    assert buffer.tell() == len(value) - 5
    return enriched_from_datum(datum)  # type: ignore[arg-type]


@pytest.mark.parametrize("email", [person_email(0), person_email(5), "grace@gmail.com"])
def test_the_output_round_trips_to_the_json_form(registry: FakeRegistry, email: str) -> None:
    writer = EnrichedWriter(registry)
    assert writer.register(OUT) == 100
    traits = clearbit_traits(email)
    value = writer.encode(enriched(writer.prepare(traits), anonymous_id="anon-9"), OUT)
    assert registry.subjects == {subject_for(OUT): [100]}
    plain = enriched(traits, anonymous_id="anon-9")
    assert read_output(value, registry) == plain
    assert orjson.loads(JsonCodec().encode(plain, OUT)) == read_output(value, registry)


def test_prepared_traits_are_spliced_byte_for_byte(registry: FakeRegistry) -> None:
    """head + prepared traits + tail is exactly what fastavro writes for the whole record."""
    writer = EnrichedWriter(registry)
    traits = clearbit_traits(person_email(2))
    prepared = writer.prepare(traits)
    assert isinstance(prepared, PreparedTraits)
    for user_id, anonymous_id in (("u", None), (None, "a"), ("u", "a")):
        value = writer.encode(enriched(prepared, user_id, anonymous_id), OUT)
        whole = avro(parsed_schema(ENRICHED_SCHEMA),
                     enriched_to_datum(enriched(traits, user_id, anonymous_id)))
        assert value[5:] == whole
    # An event whose traits were not prepared is prepared on the way.
    assert writer.encode(enriched(traits), OUT) == writer.encode(enriched(prepared), OUT)


def test_traits_without_a_field_or_of_another_type_are_kept(registry: FakeRegistry) -> None:
    writer = EnrichedWriter(registry)
    traits = {**clearbit_traits(person_email(4)),
              "clearbit_company_brand_new_field": {"nested": [1, "two"]},  # added by Clearbit
              "clearbit_company_metrics_employees": "51-250",  # changed its type
              "clearbit_person_fuzzy": 1,  # an int where a boolean belongs
              "clearbit_company_foundedYear": True,
              "clearbit_company_utc_offset": 5.5}
    value = writer.encode(enriched(writer.prepare(traits)), OUT)
    assert read_output(value, registry)["traits"] == traits


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
trait_names = st.sampled_from(["clearbit_person_name_full_name", "clearbit_person_geo_lat",
                               "clearbit_company_tags", "clearbit_person_fuzzy",
                               "clearbit_company_metrics_employees", "clearbit_other"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(trait_names | st.text(max_size=12), json_values, max_size=8))
def test_any_traits_survive_the_round_trip(traits: dict[str, Any]) -> None:
    registry = FakeRegistry()
    writer = EnrichedWriter(registry)
    full = {**{k: v for k, v in traits.items() if v is not None}, "email": "a@b.example"}
    value = writer.encode(enriched(writer.prepare(full)), OUT)
    assert read_output(value, registry)["traits"] == full


def test_the_codec_reads_and_writes_each_side_in_its_format(registry: FakeRegistry,
                                                            producer: AvroWriter) -> None:
    codec = FormatCodec(AvroReader(registry, clock=FakeClock()), JsonCodec())
    value = producer.encode(identify("ada@initech.example", user_id="u"), IN)
    assert codec.decode(rec(value))["userId"] == "u"
    traits = clearbit_traits(person_email(1))
    assert orjson.loads(codec.encode(enriched(codec.prepare(traits)), OUT))["traits"] == traits
    codec = FormatCodec(JsonCodec(), EnrichedWriter(registry))
    assert codec.decode(rec(b'{"type": "track"}')) == {"type": "track"}
    assert isinstance(codec.prepare(traits), PreparedTraits)
