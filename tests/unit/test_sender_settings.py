"""The sender's settings and its start: every variable documented, credentials checked
against the audiences that need them, secrets never flags."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from processor.devkit.conversion_samples import AUDIENCES
from processor.entrypoints.cli import main
from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.sender_settings import SenderSettings
from processor.entrypoints.settings import env_name
from processor.runtime.signals import StopRequest

README = Path(__file__).resolve().parents[2] / "README.md"
ENV_PREFIXES = ("PROCESSOR_", "META_", "GOOGLE_", "KAFKA_")


def default_text(value: object) -> str:
    if isinstance(value, SecretStr):
        return "''"
    value = getattr(value, "value", value)
    if isinstance(value, bool):
        return str(value).lower()
    return "''" if value == "" else str(value)


def test_every_variable_is_in_the_readme_with_its_default() -> None:
    readme = README.read_text()
    for field, info in SenderSettings.model_fields.items():
        row = f"| `{env_name(field, SenderSettings)}` | `{default_text(info.default)}` |"
        assert row in readme, f"README.md lacks the row: {row}"


def test_what_the_conversions_stage_also_reads_has_the_same_default() -> None:
    shared = {env_name(f, ConversionSettings): info.default
              for f, info in ConversionSettings.model_fields.items()}
    for field, info in SenderSettings.model_fields.items():
        name = env_name(field, SenderSettings)
        if name.startswith("PROCESSOR_CONV_") and name in shared:
            assert info.default == shared[name], name


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                ) -> Iterator[pytest.MonkeyPatch]:
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    audiences = tmp_path / "audiences.yaml"
    audiences.write_text(AUDIENCES)
    monkeypatch.setenv("PROCESSOR_CONV_AUDIENCES_FILE", str(audiences))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PROCESSOR_STARTUP_TIMEOUT", "1s")
    # A start that gets far enough sets up logging on this test's captured stderr: the
    # next tests must not log to it once it is closed.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield monkeypatch
    root.handlers[:] = handlers
    root.setLevel(level)


def send(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["conversions", "send"], stop=StopRequest())
    return code, capsys.readouterr().err


def test_an_audience_without_its_destinations_credentials_refuses_the_start(
        environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    environment.setenv("META_ACCESS_TOKEN", "EAAB-token")
    code, err = send(capsys)
    assert code == 2
    assert "audience 'both_7d' sends to google, but GOOGLE_OAUTH_CLIENT_ID, " \
           "GOOGLE_OAUTH_CLIENT_SECRET, GOOGLE_OAUTH_REFRESH_TOKEN is not set" in err
    assert "audience 'ads_30d' sends to google (Google Ads API)" in err
    assert "meta_7d" not in err  # it has what it needs
    assert "EAAB-token" not in err


def test_the_ads_api_also_needs_the_developer_token(
        environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in (("META_ACCESS_TOKEN", "t"), ("GOOGLE_OAUTH_CLIENT_ID", "c"),
                        ("GOOGLE_OAUTH_CLIENT_SECRET", "s"),
                        ("GOOGLE_OAUTH_REFRESH_TOKEN", "r")):
        environment.setenv(name, value)
    code, err = send(capsys)
    assert code == 2
    assert err.strip().endswith("audience 'ads_30d' sends to google (Google Ads API), but "
                                "GOOGLE_ADS_DEVELOPER_TOKEN is not set")


def test_with_every_credential_the_start_goes_on_to_the_cluster(
        environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("META_ACCESS_TOKEN", "GOOGLE_OAUTH_CLIENT_ID", "GOOGLE_OAUTH_CLIENT_SECRET",
                 "GOOGLE_OAUTH_REFRESH_TOKEN", "GOOGLE_ADS_DEVELOPER_TOKEN"):
        environment.setenv(name, "x")
    code, err = send(capsys)
    assert code == 3  # no broker at 127.0.0.1:1: past the settings, a runtime failure
    assert "could not reach Kafka" in err


def test_the_audiences_file_is_required(environment: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    environment.delenv("PROCESSOR_CONV_AUDIENCES_FILE")
    code, err = send(capsys)
    assert code == 2
    assert "PROCESSOR_CONV_AUDIENCES_FILE is required" in err


@pytest.mark.parametrize(("values", "message"), [
    ({"dry_run": True, "meta_access_token": "t"}, "META_TEST_EVENT_CODE"),
    ({"meta_test_event_code": "TEST1", "meta_access_token": "t"}, "META_TEST_EVENT_CODE"),
    ({"meta_batch_max": 1001}, "META_BATCH_MAX"),
    ({"google_batch_max": 2001}, "GOOGLE_BATCH_MAX"),
    ({"meta_max_age": "8d"}, "PROCESSOR_CONV_META_MAX_AGE"),
    ({"sent_topic": "conversions.dlq"}, "four different topics"),
    ({"meta_base_url": "graph.facebook.com"}, "META_BASE_URL"),
])
def test_bad_settings_name_the_variable(values: dict[str, object], message: str) -> None:
    from processor.core.errors import ConfigError
    from processor.entrypoints.settings import load_as

    with pytest.raises(ConfigError, match=message):
        load_as(SenderSettings, values)


def test_durations_as_the_audiences_file_writes_them() -> None:
    from processor.entrypoints.settings import load_as

    settings = load_as(SenderSettings, {"meta_max_age": "6d23h", "google_click_min_age": "6h"})
    assert settings.meta_max_age == 6 * 86_400 + 23 * 3600
    assert settings.google_click_min_age == 6 * 3600


def test_secrets_are_never_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["conversions", "send", "--help"], stop=StopRequest())
    text = capsys.readouterr().out
    assert "--meta-access-token" not in text
    assert "--google-client-secret" not in text
    assert "--google-refresh-token" not in text
    assert "--google-ads-developer-token" not in text
    assert "META_ACCESS_TOKEN" in text  # named as read from the environment
    assert "--meta-batch-max" in text
    assert "[env: PROCESSOR_CONV_LINGER; default: 1s]" in text
