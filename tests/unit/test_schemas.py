"""The files in schemas/ are the contract: well-formed, documented, and in agreement with
what the stage reads (the JSON fixtures) and writes (the Clearbit traits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from processor.adapters.avro.datum import enriched_to_datum, traits_datum
from processor.adapters.avro.schemas import (
    ADDITIONAL,
    ENRICHED_SCHEMA,
    IDENTIFY_SCHEMA,
    schema_path,
    typed_traits,
)
from processor.core.enrichment.events import (
    LookupRequest,
    classify,
    enriched_event,
    output_traits,
)
from processor.core.enrichment.mapping import PREFIX, to_traits
from processor.core.errors import InvalidFieldError, MissingIdentityError, RecordError
from processor.devkit.clearbit_records import company_record, person_record
from processor.devkit.samples import ConversionStory, demo_events, identify, person_email

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
JSON_SCHEMA = "identify.schema.json"
# Clearbit fields whose values are lists of objects: carried in additional_traits.
LISTS_OF_OBJECTS = {"clearbit_person_gravatar_urls", "clearbit_person_gravatar_avatars"}


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def json_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load(JSON_SCHEMA))


def fields_of(schema: Any) -> list[dict[str, Any]]:
    """Every record field in an Avro schema, nested ones included."""
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for field in node.get("fields", []):
                found.append(field)
                stack.append(field["type"])
            stack.extend(v for k, v in node.items() if k in ("items", "values"))
    return found


def test_the_code_reads_the_schemas_of_this_folder() -> None:
    assert schema_path(IDENTIFY_SCHEMA) == SCHEMAS / IDENTIFY_SCHEMA
    assert schema_path(ENRICHED_SCHEMA) == SCHEMAS / ENRICHED_SCHEMA


@pytest.mark.parametrize("name", [IDENTIFY_SCHEMA, ENRICHED_SCHEMA])
def test_avro_schemas_parse_and_document_every_field(name: str) -> None:
    schema = load(name)
    parse_schema(schema)
    assert schema.get("doc")
    fields = fields_of(schema)
    assert len(fields) >= 8
    undocumented = [f["name"] for f in fields if not f.get("doc")]
    assert undocumented == []


def test_every_optional_field_has_a_null_default() -> None:
    """Needed for FULL compatibility: a reader must be able to fill a missing field in."""
    for name in (IDENTIFY_SCHEMA, ENRICHED_SCHEMA):
        for field in fields_of(load(name)):
            if isinstance(field["type"], list) and "null" in field["type"]:
                assert field["type"][0] == "null", field["name"]
                assert "default" in field, field["name"]
                assert field["default"] is None, field["name"]


def test_enriched_traits_are_named_by_segments_rule_and_optional() -> None:
    traits = typed_traits()
    assert len(traits) >= 100
    for name, kind in traits.items():
        if name == "email":
            assert kind == "string"
            continue
        assert name.startswith((f"{PREFIX}_person_", f"{PREFIX}_company_")), name
        assert isinstance(kind, list), name
        assert kind[0] == "null", name


def test_the_json_schema_is_valid_and_matches_the_avro_input() -> None:
    schema = load(JSON_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    avro_fields = {f["name"] for f in load(IDENTIFY_SCHEMA)["fields"]}
    assert set(schema["properties"]) == avro_fields
    assert all(p.get("description") for p in schema["properties"].values())
    assert "email" in schema["properties"]["traits"]["properties"]


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    """Every JSON event of the demo and the samples, with what it is."""
    cases = [(label, json.loads(value)) for label, _, value in demo_events()
             if value.startswith(b"{") and value.endswith(b"}")]
    cases += [
        ("anonymous", identify("ada@initech.example", anonymous_id="anon-1")),
        ("integration settings object", identify("ada@initech.example", user_id="u",
                                                 integrations={"All": False,
                                                               "Clearbit Enrichment": {}})),
        ("numeric userId", identify("ada@initech.example", user_id=123)),  # type: ignore[arg-type]
        ("traits not an object", identify(None, user_id="u", traits=["email"])),
        ("empty userId only", identify("ada@initech.example", user_id="")),
        ("the conversions demo's sign-up", ConversionStory(now=1.8e9).identify()),
        ("the conversions demo's MQL change", ConversionStory(now=1.8e9).becomes_mql()),
    ]
    return cases


@pytest.mark.parametrize(("label", "event"), fixtures(), ids=lambda v: str(v)[:40])
def test_fixtures_pass_the_json_schema_unless_the_stage_rejects_their_shape(
        label: str, event: dict[str, Any]) -> None:
    """The JSON Schema and the classifier agree on what a well-formed Identify is."""
    errors = list(json_validator().iter_errors(event))
    try:
        classify(event)
    except (InvalidFieldError, MissingIdentityError):
        assert errors, f"{label}: the stage rejects it, the JSON Schema accepts it"
        return
    except RecordError:
        pass  # invalid_email: a check of the address itself, not of the event's shape
    assert errors == [], f"{label}: {errors[0].message if errors else ''}"


def clearbit_traits(email: str) -> dict[str, Any]:
    domain = email.rpartition("@")[2]
    return output_traits(email, to_traits(person_record(email), company_record(domain)))


@pytest.mark.parametrize("i", range(0, 240, 7))
def test_every_clearbit_trait_has_a_typed_field(i: int) -> None:
    """What the Clearbit-compatible server returns needs no additional_traits beyond the
    lists of objects: the schema documents Clearbit's attributes, with the right types."""
    for email in (person_email(i), f"someone{i}@gmail.com", f"x{i}@blue-harbor{i}.io"):
        traits = clearbit_traits(email)
        datum = traits_datum(traits)
        assert set(datum.get(ADDITIONAL, {})) <= LISTS_OF_OBJECTS
        for name, value in traits.items():
            if name not in LISTS_OF_OBJECTS:
                assert validate(value, typed_traits()[name], raise_errors=False), name


def test_json_outputs_validate_against_the_enriched_schema() -> None:
    email = person_email(3)
    request = LookupRequest(email, "user-3", None, "m-3")
    event = enriched_event(request, clearbit_traits(email), "clearbit-x",
                           "2026-11-23T09:00:00.000Z")
    schema = parse_schema(load(ENRICHED_SCHEMA))
    assert validate(enriched_to_datum(event), schema, strict=False)
