"""Choosing the formats, and what the registry's answers at start become (no registry)."""

from __future__ import annotations

import socket
import time

import pytest

from processor.adapters.avro.registry import SchemaRegistry, SchemaRegistryError
from processor.adapters.json_codec import JsonCodec
from processor.core.errors import ConfigError, FatalError
from processor.entrypoints.bootstrap import codec_for
from processor.entrypoints.settings import Settings, env_name, load
from tests.fakes import FakeClock


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in Settings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_json_is_the_default_and_needs_no_registry() -> None:
    settings = load()
    assert (settings.input_format, settings.output_format) == ("json", "json")
    assert isinstance(codec_for(settings, FakeClock()), JsonCodec)


@pytest.mark.parametrize(("overrides", "says"), [
    ({"input_format": "avro"}, "SCHEMA_REGISTRY_URL is required when PROCESSOR_INPUT_FORMAT"),
    ({"output_format": "avro"}, "SCHEMA_REGISTRY_URL is required when PROCESSOR_OUTPUT_FORMAT"),
    ({"input_format": "xml"}, "PROCESSOR_INPUT_FORMAT"),
    ({"schema_registry_url": "registry:8081"}, "SCHEMA_REGISTRY_URL must be http(s)://"),
    ({"schema_registry_url": "http://a:1,"}, "SCHEMA_REGISTRY_URL must be http(s)://"),
    ({"schema_registry_url": "http://a:1", "schema_registry_basic_auth_user_info": "nocolon"},
     "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be user:password"),
])
def test_bad_format_settings_name_the_variable(overrides: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(overrides)
    assert says in str(raised.value)
    assert "nocolon" not in str(raised.value)


def test_one_variable_turns_avro_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_OUTPUT_FORMAT", "avro")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://registry-1:8081, http://registry-2:8081")
    settings = load()
    assert settings.output_format == "avro"
    assert settings.schema_registry_auto_register is True


def test_an_unreachable_registry_stops_the_start_as_fatal() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    settings = load({"output_format": "avro", "schema_registry_url": url})
    began = time.monotonic()
    with pytest.raises(FatalError) as raised:
        codec_for(settings, FakeClock())
    assert f"SCHEMA_REGISTRY_URL={url}" in str(raised.value)
    assert "unreachable" in str(raised.value)
    assert time.monotonic() - began < 15  # the client's retries are bounded


def test_the_password_never_reaches_a_message() -> None:
    url = f"http://enrichment:s3cret@127.0.0.1:{closed_port()}"
    settings = load({"input_format": "avro", "schema_registry_url": url})
    with pytest.raises(FatalError) as raised:
        codec_for(settings, FakeClock())
    assert "s3cret" not in str(raised.value)
    assert "//***@127.0.0.1" in str(raised.value)


def test_credentials_in_the_url_and_a_variable_at_once_are_refused() -> None:
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"):
        SchemaRegistry({"url": "http://u:p@127.0.0.1:1", "basic.auth.user.info": "v:w"})


@pytest.mark.parametrize(("status", "code", "kind", "says"), [
    (401, 40101, ConfigError, "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
    (403, 40301, ConfigError, "ACLs"),
    (404, 404, ConfigError, "Confluent-compatible API root"),
    (409, 409, ConfigError, "not compatible with the versions already registered"),
    (422, 42201, ConfigError, "refused the schema as invalid"),
    (500, 50001, FatalError, "HTTP 500"),
    (503, 50003, FatalError, "HTTP 503"),
])
def test_registry_answers_at_start(status: int, code: int, kind: type[Exception],
                                   says: str) -> None:
    registry = SchemaRegistry({"url": "http://127.0.0.1:1"})
    with pytest.raises(kind) as raised, registry._at_start("registering the output schema"):
        raise SchemaRegistryError(status, code, "the registry's own words")
    assert says in str(raised.value)
    assert "SCHEMA_REGISTRY_URL=http://127.0.0.1:1" in str(raised.value)
    assert "the registry's own words" in str(raised.value)
