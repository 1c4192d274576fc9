"""Settings and the command line: defaults, validation, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from processor.core.errors import ConfigError
from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.cli import flag_fields, main
from processor.entrypoints.settings import Settings, env_name, kafka_overrides, load, parse_duration
from processor.runtime.signals import StopRequest

ISSUE_CONTRACT = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "PROCESSOR_INPUT_TOPIC": "identify.raw",
    "PROCESSOR_OUTPUT_TOPIC": "identify.enriched",
    "PROCESSOR_DLQ_TOPIC": "identify.dlq",
    "PROCESSOR_GROUP_ID": "clearbit-enrichment",
    "PROCESSOR_MAX_IN_FLIGHT": "32",
    "PROCESSOR_METRICS_PORT": "9108",
    "CLEARBIT_BASE_URL": "https://person.clearbit.com",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in Settings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)


def test_defaults_match_the_documented_contract() -> None:
    settings = load()
    for field in Settings.model_fields:
        name = env_name(field)
        if name in ISSUE_CONTRACT:
            value = getattr(settings, field)
            assert str(getattr(value, "value", value)) == ISSUE_CONTRACT[name]


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_INPUT_TOPIC", "raw.v2")
    monkeypatch.setenv("PROCESSOR_MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("PROCESSOR_CACHE_TTL", "2d")
    settings = load()
    assert settings.input_topic == "raw.v2"
    assert settings.max_in_flight == 7
    assert settings.cache_ttl == 172800


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(Exception, match="frozen"):
        settings.input_topic = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PROCESSOR_MAX_IN_FLIGHT", "abc", "PROCESSOR_MAX_IN_FLIGHT"),
        ("PROCESSOR_MAX_IN_FLIGHT", "0", "PROCESSOR_MAX_IN_FLIGHT"),
        ("PROCESSOR_INPUT_TOPIC", "", "PROCESSOR_INPUT_TOPIC"),
        ("PROCESSOR_OUTPUT_TOPIC", "has space", "PROCESSOR_OUTPUT_TOPIC"),
        ("PROCESSOR_METRICS_PORT", "70000", "PROCESSOR_METRICS_PORT"),
        ("PROCESSOR_DELIVERY", "maybe-once", "PROCESSOR_DELIVERY"),
        ("PROCESSOR_CACHE_TTL", "forever", "PROCESSOR_CACHE_TTL"),
        ("CLEARBIT_BASE_URL", "person.clearbit.com", "CLEARBIT_BASE_URL"),
        ("PROCESSOR_DLQ_TOPIC", "identify.raw", "PROCESSOR_DLQ_TOPIC"),
        ("PROCESSOR_GROUP_ID", "", "PROCESSOR_GROUP_ID"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                      value: str, says: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load()
    assert says in str(raised.value)


def test_api_key_checks() -> None:
    with pytest.raises(ConfigError, match="CLEARBIT_API_KEY is required"):
        load().check_api_key()
    with pytest.raises(ConfigError, match=r"publishable key .*sk_"):
        load({"clearbit_api_key": "pk_live_123"}).check_api_key()
    load({"clearbit_api_key": "sk_live_123"}).check_api_key()
    with pytest.raises(ConfigError, match="HUNTER_API_KEY"):
        load({"provider": "hunter"}).check_api_key()


def test_key_never_appears_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARBIT_API_KEY", "sk_live_supersecret")
    monkeypatch.setenv("PROCESSOR_MAX_IN_FLIGHT", "nope")
    with pytest.raises(ConfigError) as raised:
        load()
    assert "supersecret" not in str(raised.value)
    monkeypatch.delenv("PROCESSOR_MAX_IN_FLIGHT")
    assert "supersecret" not in repr(load())


@pytest.mark.parametrize(("text", "seconds"),
                         [("30", 30.0), ("250ms", 0.25), ("5m", 300.0), ("12h", 43200.0),
                          ("7d", 604800.0), ("1.5s", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_kafka_passthrough() -> None:
    environ = {
        "PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PROCESSOR_KAFKA_SASL_MECHANISMS": "PLAIN",
        "PROCESSOR_KAFKA_CONSUMER_FETCH_MAX_BYTES": "1048576",
        "PROCESSOR_KAFKA_PRODUCER_LINGER_MS": "20",
        "PROCESSOR_KAFKA_SOME__UNDERSCORED": "x",
    }
    consumer, sources = kafka_overrides("consumer", environ)
    assert consumer == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                        "fetch.max.bytes": "1048576", "some_underscored": "x"}
    assert sources["fetch.max.bytes"] == "PROCESSOR_KAFKA_CONSUMER_FETCH_MAX_BYTES"
    producer, _ = kafka_overrides("producer", environ)
    assert producer["linger.ms"] == "20"
    assert "fetch.max.bytes" not in producer
    config, _ = kafka_config(load(), "producer", environ)
    assert config["linger.ms"] == "20"  # the pass-through wins over our defaults
    assert config["enable.idempotence"] is True


def test_transactional_id_defaults_to_group_and_host() -> None:
    settings = load({"delivery": "exactly-once", "group_id": "g"})
    config, _ = kafka_config(settings, "producer", {})
    assert config["transactional.id"].startswith("g-")
    consumer, _ = kafka_config(settings, "consumer", {})
    assert consumer["enable.auto.commit"] is False


# --- the command line ----------------------------------------------------------------


def test_run_help_lists_every_option_with_its_variable_and_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for field in Settings.model_fields:
        assert env_name(field) in text
    assert "default: identify.raw" in text
    assert "PROCESSOR_KAFKA_" in text


def test_secrets_are_not_flags() -> None:
    assert "clearbit_api_key" not in flag_fields()
    assert "hunter_api_key" not in flag_fields()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "CLEARBIT_API_KEY is required"),
        ({"CLEARBIT_API_KEY": "pk_test_abc"}, "publishable key"),
        ({"CLEARBIT_API_KEY": "sk_x", "PROCESSOR_MAX_IN_FLIGHT": "many"},
         "PROCESSOR_MAX_IN_FLIGHT"),
        ({"CLEARBIT_API_KEY": "sk_x", "PROCESSOR_INPUT_TOPIC": ""}, "PROCESSOR_INPUT_TOPIC"),
    ],
)
def test_config_errors_exit_2_with_one_line_and_no_traceback(env: dict[str, str],
                                                             says: str) -> None:
    clean = {"PATH": "/usr/bin:/bin", **env}
    done = subprocess.run([sys.executable, "-m", "processor", "run"], env=clean,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert says in lines[0]
    assert "Traceback" not in done.stderr
    assert "sk_x" not in done.stderr


def test_flag_overrides_environment(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLEARBIT_API_KEY", "sk_x")
    monkeypatch.setenv("PROCESSOR_MAX_IN_FLIGHT", "5")
    assert main(["run", "--max-in-flight", "zero"]) == 2
    assert "PROCESSOR_MAX_IN_FLIGHT" in capsys.readouterr().err


def test_readme_documents_every_variable_with_its_default() -> None:
    from pathlib import Path

    from processor.entrypoints.cli import _default_text

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for field, info in Settings.model_fields.items():
        row = f"| `{env_name(field)}` | `{_default_text(info.default, info.description or '')}` |"
        assert row in readme, f"README.md lacks the row: {row}"


def test_an_unexpected_error_exits_3_with_one_line_and_no_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from processor.entrypoints import cli

    def broken(_overrides: object) -> None:
        raise RuntimeError("boom near ada@example.com")

    monkeypatch.setattr(cli, "load", broken)
    assert main(["run"], stop=StopRequest()) == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1] == ("processor: fatal: unexpected RuntimeError in processor run: "
                         "boom near <email>")
    assert "Traceback" not in err


def test_readme_documents_every_conversions_variable_with_its_default() -> None:
    from pathlib import Path

    from processor.entrypoints.cli import _default_text
    from processor.entrypoints.conversion_settings import ConversionSettings
    from processor.entrypoints.settings import StageSettings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for field, info in ConversionSettings.model_fields.items():
        if field in StageSettings.model_fields and field != "group_id":
            continue  # the runtime's, in the first table
        name = env_name(field, ConversionSettings)
        row = f"| `{name}` | `{_default_text(info.default, info.description or '')}` |"
        assert row in readme, f"README.md lacks the row: {row}"
