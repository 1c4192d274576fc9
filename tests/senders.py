"""Helpers for the sender's tests: conversions-topic records, settings against the local
Meta- and Google-compatible servers, the sender run in-process, its results read back."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from confluent_kafka import Message

from processor.core.conversions.audit import SENT_SCHEMA
from processor.core.conversions.record import SCHEMA
from processor.devkit import google_server, meta_server
from processor.devkit.conversion_samples import (
    AUDIENCES,
    sample_conversion,
    sender_environment,
)
from processor.entrypoints.sender import SenderAssembly, assemble, preflight
from processor.entrypoints.sender_settings import SenderSettings
from processor.entrypoints.settings import load_as
from tests.harness import headers_of, read

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def conversion(n: int, audience: str = "both_7d", **fields: Any) -> dict[str, Any]:
    """A conversions-topic record as the conversions stage writes it (checked against the
    schema here): entry an hour ago by default, clicks ``click_age`` seconds before now."""
    record = sample_conversion(n, audience, **fields)
    assert list(schema_validator(SCHEMA).iter_errors(record)) == [], record
    return record


def outbox_items(records: list[dict[str, Any]]) -> list[tuple[bytes | None, Any]]:
    return [(r["conversion_id"].encode(), r) for r in records]


@cache
def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@dataclass
class SenderNames:
    outbox: str
    delayed: str
    sent: str
    dlq: str
    group: str
    audiences: Path

    def settings(self, bootstrap: str, meta: meta_server.MetaServer | None,
                 google: google_server.GoogleServer | None, **overrides: Any
                 ) -> SenderSettings:
        values: dict[str, Any] = {
            "bootstrap_servers": bootstrap, "outbox_topic": self.outbox,
            "delay_topic": self.delayed, "sent_topic": self.sent, "dlq_topic": self.dlq,
            "group_id": self.group, "audiences_file": str(self.audiences),
            "metrics_port": 0, "commit_interval": 0.2, "lag_interval": 0.5,
            "shutdown_timeout": 10.0, "linger": 0.2, "fatal_linger": 0.0,
        }
        if meta is not None:
            values.update(meta_access_token=meta_server.DEFAULT_TOKEN, meta_base_url=meta.url)
        if google is not None:
            values.update(
                google_client_id=google_server.DEFAULT_CLIENT_ID,
                google_client_secret=google_server.DEFAULT_CLIENT_SECRET,
                google_refresh_token=google_server.DEFAULT_REFRESH_TOKEN,
                google_ads_developer_token=google_server.DEFAULT_DEVELOPER_TOKEN,
                google_token_url=google.token_url, google_datamanager_base_url=google.url,
                google_ads_base_url=google.url, google_rate_limit_per_minute=0)
        values.update(overrides)
        return load_as(SenderSettings, values)


@dataclass
class RunningSender:
    assembly: SenderAssembly
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def sensor(self) -> Any:
        return self.assembly.sensor


@contextlib.contextmanager
def running_sender(settings: SenderSettings, *,
                   expect_failure: bool = False) -> Iterator[RunningSender]:
    """The sender on a thread (as ``processor conversions send`` runs it), stopped on exit."""
    audiences = preflight(settings)
    assembly = assemble(settings, audiences)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assembly.stage.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name="sender-under-test", daemon=True)
    if assembly.metrics:
        assembly.metrics.start()
    assembly.lag.start()
    thread.start()
    running = RunningSender(assembly, thread, errors)
    try:
        yield running
    finally:
        assembly.stage.request_stop()
        thread.join(60)
        assembly.lag.stop()
        if assembly.metrics:
            assembly.metrics.stop()
        assert not thread.is_alive(), "the sender did not stop within 60 s"
        if errors and not expect_failure:
            raise errors[0]


@dataclass(frozen=True)
class Results:
    """What came out: audit records by (destination, conversion id) and dead letters."""

    audit: list[dict[str, Any]]
    letters: list[Message]
    delayed: list[Message]

    def statuses(self, destination: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for record in self.audit:
            if record["destination"] == destination:
                found.setdefault(record["conversion_id"], []).append(record["status"])
        return found

    def reasons(self) -> list[str]:
        return sorted(headers_of(m)["__conversions.errors.reason"] for m in self.letters)


def results(bootstrap: str, names: SenderNames, *, until: Callable[[Results], bool],
            timeout: float = 60.0, settle: float = 0.0) -> Results:
    def split(messages: list[Message]) -> Results:
        audit = [orjson.loads(m.value()) for m in messages if m.topic() == names.sent]
        return Results(audit, [m for m in messages if m.topic() == names.dlq],
                       [m for m in messages if m.topic() == names.delayed])

    messages = read(bootstrap, [names.sent, names.dlq, names.delayed],
                    until=lambda m: until(split(m)), timeout=timeout, settle=settle)
    found = split(messages)
    validator = schema_validator(SENT_SCHEMA)
    for record in found.audit:
        assert list(validator.iter_errors(record)) == [], record
    return found


def make_names(kafka_topics: Callable[..., str], unique_name: str, folder: Path,
               audiences: str = AUDIENCES) -> SenderNames:
    """Fresh topics (outbox and delay topic with 3 partitions) and group, and the
    audiences file."""
    path = folder / "audiences.yaml"
    path.write_text(audiences)
    return SenderNames(outbox=kafka_topics("outbox", 3), delayed=kafka_topics("delayed", 3),
                       sent=kafka_topics("sent", 3), dlq=kafka_topics("dlq", 1),
                       group=f"{unique_name}-sender", audiences=path)


def sender_env(bootstrap: str, names: SenderNames, meta: meta_server.MetaServer,
               google: google_server.GoogleServer, **extra: str) -> dict[str, str]:
    """The environment of ``processor conversions send`` against the local servers."""
    topics = {"outbox": names.outbox, "delayed": names.delayed, "sent": names.sent,
              "dlq": names.dlq, "group": names.group}
    return sender_environment(bootstrap, topics, str(names.audiences), meta, google, **{
        # A killed member is noticed in 6 s instead of librdkafka's default 45 s.
        "PROCESSOR_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "PROCESSOR_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
        "GOOGLE_RATE_LIMIT_PER_MINUTE": "0", **extra})
