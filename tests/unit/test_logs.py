"""Log output: JSON off a terminal, readable lines on one, the level honoured, and
no email address or key in any field of any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from processor.adapters import logs
from processor.core.redact import email_hash

EMAIL = "ada.lovelace@initech.example"
KEY = "sk_live_0123456789abcdef"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_json_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    logs.configure("INFO", "auto", stream=out)
    logging.getLogger("processor.runtime.loop").info("assigned %d partitions", 3)
    (line,) = lines(out)
    record = json.loads(line)
    assert record["event"] == "assigned 3 partitions"
    assert record["level"] == "info"
    assert record["logger"] == "processor.runtime.loop"
    assert record["timestamp"].endswith("Z")


def test_readable_lines_on_a_terminal() -> None:
    out = Terminal()
    logs.configure("INFO", "auto", stream=out)
    logging.getLogger("processor.runtime.loop").warning("revoked %s", "in[0]")
    (line,) = lines(out)
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "revoked in[0]" in line
    assert "warn" in line


@pytest.mark.parametrize(("fmt", "stream", "is_json"), [
    ("json", Terminal(), True), ("console", io.StringIO(), False)])
def test_an_explicit_format_wins(fmt: str, stream: io.StringIO, is_json: bool) -> None:
    logs.configure("INFO", fmt, stream=stream)
    logging.getLogger("x").info("hello")
    (line,) = lines(stream)
    assert line.startswith("{") is is_json


def test_the_level_is_honoured() -> None:
    out = io.StringIO()
    logs.configure("warning", "json", stream=out)
    logging.getLogger("processor").info("not shown")
    logging.getLogger("processor").debug("not shown")
    logging.getLogger("processor").error("shown")
    assert [json.loads(line)["event"] for line in lines(out)] == ["shown"]


def test_no_email_or_key_in_messages_tracebacks_or_fields() -> None:
    out = io.StringIO()
    logs.configure("DEBUG", "json", stream=out)
    log = logging.getLogger("processor.stages.enrichment.lookups")
    log.info("lookup for %s with %s", EMAIL, KEY)
    try:
        raise ValueError(f"provider refused {EMAIL} (key {KEY})")
    except ValueError:
        log.exception("lookup failed")
    structlog.get_logger("processor.native").warning("odd answer", email=EMAIL, key=KEY)
    text = out.getvalue()
    assert len(lines(out)) == 3
    assert "@" not in text
    assert "sk_live" not in text
    records = [json.loads(line) for line in lines(out)]
    assert records[0]["event"] == "lookup for <email> with <key>"
    assert "ValueError: provider refused <email>" in records[1]["exception"]
    assert records[2]["email"] == "<email>"
    assert records[2]["logger"] == "processor.native"


def test_a_record_is_named_by_a_short_hash() -> None:
    digest = email_hash(EMAIL)
    assert len(digest) == 12
    assert set(digest) <= set("0123456789abcdef")
    assert email_hash(EMAIL) == digest != email_hash("grace@initech.example")


def test_httpx_request_lines_are_silenced() -> None:
    # httpx logs each request URL, and ours carry the email in the query string.
    logs.configure("DEBUG", "json", stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
