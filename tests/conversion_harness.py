"""The conversions stage on the real broker: its topics, settings, and an in-process run."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message

from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.conversions import ConversionAssembly, assemble, audiences_of, preflight
from processor.entrypoints.settings import load_as
from tests.conversion_events import AUDIENCES_YAML, Population
from tests.harness import read_all, wait_for


@dataclass
class ConversionNames:
    """One test's topics (created), group and audiences file."""

    prefix: str
    events: str
    identifies: str
    group: str
    audiences: Path
    partitions: int

    @property
    def output(self) -> str:
        return f"{self.prefix}.outbox"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    def settings(self, bootstrap: str, state_dir: Path, **overrides: Any) -> ConversionSettings:
        values: dict[str, Any] = {
            "bootstrap_servers": bootstrap, "event_topics": self.events,
            "identify_topics": self.identifies, "topic_prefix": self.prefix,
            "output_topic": self.output, "dlq_topic": self.dlq, "group_id": self.group,
            "audiences_file": str(self.audiences), "state_dir": str(state_dir),
            "settle_delay": 1.0, "metrics_port": 0, "commit_interval": 0.2,
            "lag_interval": 0.5, "shutdown_timeout": 10.0,
        }
        values.update(overrides)
        return load_as(ConversionSettings, values)


def make_names(kafka_topics: Callable[..., str], unique_name: str, tmp_path: Path,
               partitions: int = 3, audiences: str = AUDIENCES_YAML) -> ConversionNames:
    prefix = f"{unique_name}-conv"
    compact = {"cleanup.policy": "compact"}
    for name, config in (("by-anon", None), ("by-person", None), ("anon-state", compact),
                         ("person-state", compact), ("outbox", None), ("dlq", None)):
        kafka_topics(f"conv.{name}", partitions, config=config)
    path = tmp_path / "audiences.yaml"
    path.write_text(audiences)
    return ConversionNames(prefix, kafka_topics("events", partitions),
                           kafka_topics("identifies", partitions), f"{unique_name}-conv",
                           path, partitions)


@dataclass
class RunningConversions:
    assembly: ConversionAssembly
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def sensor(self) -> Any:
        return self.assembly.sensor


@contextlib.contextmanager
def running_conversions(settings: ConversionSettings) -> Iterator[RunningConversions]:
    """The stage on a thread, as ``processor conversions`` runs it; stopped on exit."""
    audiences = audiences_of(settings)
    preflight(settings)
    assembly = assemble(settings, audiences)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assembly.stage.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name="conversions-under-test", daemon=True)
    assembly.lag.start()
    thread.start()
    try:
        yield RunningConversions(assembly, thread, errors)
    finally:
        assembly.stage.request_stop()
        thread.join(60)
        assembly.lag.stop()
        assert not thread.is_alive(), "the stage did not stop within 60 s"
        if errors:
            raise errors[0]


def conversions_on(bootstrap: str, names: ConversionNames) -> list[dict[str, Any]]:
    """Every committed record of the conversions topic, decoded."""
    return [orjson.loads(m.value() or b"") for m in read_all(bootstrap, [names.output])]


def wait_for_conversions(bootstrap: str, names: ConversionNames, count: int,
                         timeout: float = 60.0) -> list[dict[str, Any]]:
    """The conversions topic's records once it holds at least ``count``."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = conversions_on(bootstrap, names)
        return len(found) >= count

    wait_for(enough, timeout, f"{count} conversion(s)")
    return found


def values(messages: list[Message]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value() or b"") for m in messages]


@dataclass
class ConversionAudit:
    """What the outbox holds against what a ``Population`` must make."""

    expected: int
    records: int  # conversions on the topic (distinct offsets)
    missing: list[str]  # expected ids with no conversion
    unexpected: list[str]  # ids no entry has: a non-entry converted, or a second id
    duplicates: int  # records beyond the first of each id
    foreign_clicks: int  # conversions carrying someone else's click
    with_clicks: int  # entries whose conversion has their person's gclid attached

    def line(self, label: str) -> str:
        return (f"[chaos] {label}: entries={self.expected} conversions={self.records} "
                f"lost={len(self.missing)} unexpected={len(self.unexpected)} "
                f"duplicates={self.duplicates} with_clicks={self.with_clicks}")


def audit_conversions(bootstrap: str, names: ConversionNames, population: Population,
                      read_committed: bool = True) -> ConversionAudit:
    expected = population.expected()
    # By offset: a record the reader happened to fetch twice is not a second conversion.
    records = {(m.partition(), m.offset()): orjson.loads(m.value() or b"")
               for m in read_all(bootstrap, [names.output], read_committed=read_committed)}
    seen: dict[str, int] = {}
    foreign = 0
    attached: set[str] = set()
    for conversion in records.values():
        conversion_id = conversion["conversion_id"]
        seen[conversion_id] = seen.get(conversion_id, 0) + 1
        person = conversion["person_key"]
        if expected.get(conversion_id) != person:
            continue  # counted as unexpected below
        google = conversion.get("clicks", {}).get("google")
        if google is not None:
            if google["value"] == f"g{person[1:]}":
                attached.add(conversion_id)
            else:
                foreign += 1
    return ConversionAudit(
        expected=len(expected), records=len(records),
        missing=sorted(set(expected) - set(seen)), unexpected=sorted(set(seen) - set(expected)),
        duplicates=len(records) - len(seen), foreign_clicks=foreign, with_clicks=len(attached))
