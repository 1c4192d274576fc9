"""Avro mode on the real broker and a real schema registry: end to end, schema evolution,
bad input, and what the registry's failures do."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from processor.adapters.avro.datum import enriched_from_datum, identify_to_datum
from processor.adapters.avro.registry import Schema, SchemaRegistry, subject_for
from processor.adapters.avro.schemas import ENRICHED_SCHEMA, IDENTIFY_SCHEMA, schema_text
from processor.adapters.avro.writer import AvroWriter
from processor.core.clock import SystemClock
from processor.core.enrichment.events import output_traits
from processor.core.enrichment.mapping import to_traits
from processor.core.errors import ConfigError, FatalError
from processor.devkit.clearbit_records import company_record, person_record
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.registry import LocalRegistry
from processor.devkit.samples import identify, person_email
from processor.entrypoints.bootstrap import codec_for
from tests.harness import (
    Names,
    committed_offsets,
    headers_of,
    produce,
    read,
    read_all,
    running_stage,
    sample,
    wait_for,
)

# The "older" output schema: today's without the two fields added last.
NEWER_FIELDS = ("clearbit_company_parent_domain", "clearbit_company_ultimate_parent_domain")


def expected_traits(email: str) -> dict[str, Any]:
    domain = email.rpartition("@")[2]
    return output_traits(email, to_traits(person_record(email), company_record(domain)))


def raw_writer(url: str) -> AvroWriter:
    """A producer of raw Identify events, as an upstream service would be."""
    return AvroWriter(SchemaRegistry({"url": url}), schema=IDENTIFY_SCHEMA,
                      to_datum=identify_to_datum)


@pytest.fixture
def client(schema_registry: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": schema_registry}) as registry_client:
        yield registry_client


def plain_reader(client: SchemaRegistryClient, reader_schema: str | None = None) -> Any:
    """What any consumer of the output topic would use: Confluent's own deserializer."""
    deserializer = AvroDeserializer(client, schema_str=reader_schema)

    def decode(message: Message) -> dict[str, Any]:
        context = SerializationContext(message.topic() or "", MessageField.VALUE)
        datum: dict[str, Any] = deserializer(message.value(), context)
        return datum

    return decode


def older_schema() -> str:
    schema = json.loads(schema_text(ENRICHED_SCHEMA))
    traits = next(f for f in schema["fields"] if f["name"] == "traits")["type"]
    traits["fields"] = [f for f in traits["fields"] if f["name"] not in NEWER_FIELDS]
    return json.dumps(schema)


def test_avro_end_to_end(kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
                         schema_registry: str, client: SchemaRegistryClient) -> None:
    writer = raw_writer(schema_registry)
    items: list[tuple[bytes | None, bytes]] = []
    expect: Counter[tuple[str, str]] = Counter()

    def add(count: int, outcome: tuple[str, str], make: Any) -> None:
        for i in range(count):
            key, value = make(i)
            items.append((key, value if isinstance(value, bytes)
                          else writer.encode(value, names.input)))
        expect[outcome] += count

    add(40, ("enriched", ""), lambda i: (f"user-{i % 15}".encode(), identify(
        person_email(i % 15), user_id=f"user-{i % 15}", message_id=f"m-{i}")))
    add(10, ("enriched", ""), lambda i: (None, identify(
        f"visitor{i}@gmail.com", anonymous_id=f"anon-{i}")))
    add(5, ("skipped", "no_email"), lambda i: (b"k", identify(None, user_id="u")))
    add(5, ("skipped", "not_identify"), lambda i: (b"k", {"type": "track", "userId": "u"}))
    add(5, ("skipped", "integration_disabled"), lambda i: (b"k", identify(
        "ada@initech.example", user_id="u", integrations={"Clearbit Enrichment": False})))
    add(5, ("skipped", "not_found"), lambda i: (b"k", identify(
        f"notfound{i}@initech.example", user_id="u")))
    add(5, ("dead_lettered", "avro_bad_magic_byte"), lambda i: (
        b"k", b'{"type": "identify", "userId": "json-on-an-avro-topic"}'))
    add(5, ("dead_lettered", "avro_unknown_schema"), lambda i: (
        b"k", b"\x00\x7f\xff\xff" + bytes([0xF0 + i]) + b"\x10identify"))
    good = writer.encode(identify("ada@initech.example", user_id="u"), names.input)
    add(5, ("dead_lettered", "avro_decode_error"), lambda i: (b"k", good[: 20 + i]))
    add(5, ("dead_lettered", "invalid_email"), lambda i: (b"k", identify(
        f"broken{i}@@example", user_id="u")))
    add(5, ("dead_lettered", "missing_identity"), lambda i: (b"k", identify(
        "ada@initech.example")))
    items = items[::2] + items[1::2]
    total = produce(kafka_bootstrap, names.input, items)
    enriched = expect[("enriched", "")]
    dead = sum(n for (outcome, _), n in expect.items() if outcome == "dead_lettered")

    settings = names.settings(kafka_bootstrap, clearbit.url, input_format="avro",
                              output_format="avro", schema_registry_url=schema_registry)
    with running_stage(settings) as stage:
        out = read(kafka_bootstrap, [names.output, names.dlq],
                   until=lambda m: len(m) >= enriched + dead)
        wait_for(lambda: sum(sample(stage.sensor, "enrichment_events_total", outcome=o,
                                    reason=r) for o, r in expect) == total, 20,
                 "every event counted")
        counted = {(o, r): int(sample(stage.sensor, "enrichment_events_total", outcome=o,
                                      reason=r)) for o, r in expect}
    assert counted == dict(expect)

    # The outputs: Confluent's deserializer and the registry are all a consumer needs.
    decode = plain_reader(client)
    outputs = [m for m in out if m.topic() == names.output]
    assert len(outputs) == enriched
    for message in outputs:
        event = enriched_from_datum(decode(message))
        assert event["traits"] == expected_traits(event["traits"]["email"])
        assert event["integrations"] == {"Clearbit Enrichment": False}
        assert message.key() == (event.get("userId") or event["anonymousId"]).encode()
    assert len({enriched_from_datum(decode(m))["messageId"] for m in outputs}) == enriched

    # The output schema is the file, registered under the topic's subject, FULL.
    subject = subject_for(names.output)
    assert client.get_compatibility(subject) == "FULL"
    latest = client.get_latest_version(subject)
    assert json.loads(latest.schema.schema_str) == json.loads(schema_text(ENRICHED_SCHEMA))

    # Bad input went to the dead-letter topic with its own reason, bytes untouched.
    letters = [m for m in out if m.topic() == names.dlq]
    reasons = Counter(headers_of(m)["__enrichment.errors.reason"] for m in letters)
    assert reasons == {r: n for (o, r), n in expect.items() if o == "dead_lettered"}
    assert {m.value() for m in letters} <= {value for _, value in items}


def test_an_older_reader_reads_the_newer_output(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        schema_registry: str, client: SchemaRegistryClient) -> None:
    """Version 1 of the output schema is registered; the stage registers today's (with
    two more Clearbit fields) as version 2 under FULL; a consumer still on version 1
    reads the new outputs."""
    subject = subject_for(names.output)
    client.set_compatibility(subject, "FULL")
    client.register_schema(subject, Schema(older_schema(), "AVRO"))

    emails = [f"ada.{i}@vandelay.example" for i in range(3)]  # a company with a parent
    produce(kafka_bootstrap, names.input,
            [(b"u", identify(email, user_id="u")) for email in emails])
    settings = names.settings(kafka_bootstrap, clearbit.url, output_format="avro",
                              schema_registry_url=schema_registry)
    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= len(emails))
    assert client.get_versions(subject) == [1, 2]

    newer, older = plain_reader(client), plain_reader(client, older_schema())
    for message in out:
        new = newer(message)["traits"]
        old = older(message)["traits"]
        assert new["clearbit_company_parent_domain"] == "globex.example"
        assert not set(NEWER_FIELDS) & set(old)
        assert {k: v for k, v in new.items() if k not in NEWER_FIELDS} == old


def test_an_incompatible_output_schema_stops_the_start(
        unique_name: str, schema_registry: str, client: SchemaRegistryClient) -> None:
    """A subject whose versions today's schema cannot evolve from: a clear refusal."""
    topic = f"{unique_name}-out"
    schema = json.loads(schema_text(ENRICHED_SCHEMA))
    schema["fields"].append({"name": "tenant", "type": "string"})  # required, no default
    client.set_compatibility(subject_for(topic), "FULL")
    client.register_schema(subject_for(topic), Schema(json.dumps(schema), "AVRO"))
    settings = Names(input="in", output=topic, dlq="dlq", group="g").settings(
        "127.0.0.1:9", "http://127.0.0.1:9", output_format="avro",
        schema_registry_url=schema_registry)
    with pytest.raises(ConfigError) as raised:
        codec_for(settings, SystemClock())
    message = str(raised.value)
    assert "HTTP 409" in message
    assert subject_for(topic) in message
    assert f"SCHEMA_REGISTRY_URL={schema_registry}" in message


def test_without_auto_registration_the_schema_must_be_registered(
        unique_name: str, schema_registry: str, client: SchemaRegistryClient) -> None:
    topic = f"{unique_name}-out"
    settings = Names(input="in", output=topic, dlq="dlq", group="g").settings(
        "127.0.0.1:9", "http://127.0.0.1:9", output_format="avro",
        schema_registry_url=schema_registry, schema_registry_auto_register=False)
    with pytest.raises(ConfigError, match=r"not registered under .*AUTO_REGISTER is false"):
        codec_for(settings, SystemClock())
    schema_id = client.register_schema(subject_for(topic),
                                       Schema(schema_text(ENRICHED_SCHEMA), "AVRO"))
    codec = codec_for(settings, SystemClock())
    value = codec.encode({"type": "identify", "messageId": "m", "timestamp": "t",
                          "userId": "u", "traits": {"email": "a@b.example"},
                          "integrations": {"Clearbit Enrichment": False}}, topic)
    assert value[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    assert client.get_versions(subject_for(topic)) == [1]


def test_a_url_that_is_not_the_registry_api_is_a_config_error(schema_registry: str) -> None:
    root = schema_registry.removesuffix("/apis/ccompat/v7")
    if root == schema_registry:
        pytest.skip("SCHEMA_REGISTRY_URL is not the local Apicurio's ccompat API")
    settings = Names(input="in", output="out", dlq="dlq", group="g").settings(
        "127.0.0.1:9", "http://127.0.0.1:9", input_format="avro", schema_registry_url=root)
    with pytest.raises(ConfigError, match="Confluent-compatible API root"):
        codec_for(settings, SystemClock())


def test_a_registry_outage_stops_the_stage_and_dead_letters_nothing(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    """Records whose schema cannot be fetched are not dead-lettered: the stage stops
    (exit 3 from the command) with nothing committed past them, for the next run."""
    with LocalRegistry() as registry:
        values = [raw_writer(registry.url).encode(identify(person_email(i), user_id="u"),
                                                  names.input) for i in range(3)]
        settings = names.settings(kafka_bootstrap, clearbit.url, input_format="avro",
                                  schema_registry_url=registry.url)
        with running_stage(settings, expect_failure=True) as stage:
            registry.stop()  # after the stage's start-up probe, before any record
            produce(kafka_bootstrap, names.input, [(b"u", value) for value in values])
            wait_for(lambda: bool(stage.errors), 60, "the stage to stop")
    error = stage.errors[0]
    assert isinstance(error, FatalError)
    assert "SCHEMA_REGISTRY_URL=" in str(error)
    assert read_all(kafka_bootstrap, [names.dlq]) == []
    assert read_all(kafka_bootstrap, [names.output]) == []
    assert all(offset <= 0 for offset in
               committed_offsets(kafka_bootstrap, names.group, names.input, 3).values())
