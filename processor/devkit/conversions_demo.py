"""``make run``, second part: one invented visitor's story through ``processor conversions``.

1. the stage's topics, from its own plan (what ``processor conversions topics`` prints),
   the changelogs compacted;
2. ``processor conversions`` as its own process, reading the demo's raw identifies and
   the enriched ones of ``processor run`` (still running: the audience needs a
   ``clearbit_`` trait only enrichment adds);
3. the story (``samples.ConversionStory``): an anonymous page view with a gclid and an
   fbclid three days ago, an identify with an email a day ago that links the visitor to
   a user, then a CRM trait change to ``lifecycle=MQL``;
4. the conversion record, read back and shown field by field, and the stage's counts
   from ``/metrics``; then ``send`` (where sending the record to the ad platforms comes
   in), SIGTERM, and the stage's exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from processor.core.enrichment.events import output_message_id
from processor.devkit import sender_demo
from processor.devkit.broker import create_topics
from processor.devkit.demo_console import free_port, heading, metric_lines, metric_total, say
from processor.devkit.samples import ConversionStory, iso
from processor.entrypoints import conversion_topics
from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.conversions import cluster_topics
from processor.entrypoints.settings import load_as

AUDIENCES = Path(__file__).with_name("demo_audiences.yaml")
# Long enough for the clicks forwarded by the visitor task to reach the person first,
# short enough not to keep the demo waiting.
SETTLE_DELAY = "2s"

Sender = Callable[[str, str], None]
"""What runs once the conversion is on the topic: (bootstrap servers, conversions topic)."""


def send_conversions(bootstrap: str, topic: str) -> None:
    """The sending: ``processor conversions send`` reads ``topic`` on ``bootstrap`` and
    posts each conversion to the Meta- and Google-compatible servers of the devkit.
    Called with the stage still running and the story's conversion on ``topic``; its
    output goes between the record and the stage's metrics."""
    sender_demo.send_conversions(bootstrap, topic, AUDIENCES)


@dataclass(frozen=True)
class LoopTopics:
    """The topics of the demo's conversions part: its inputs and what the stage writes."""

    raw: str  # the raw identifies (``processor run``'s input)
    enriched: str  # ``processor run``'s output
    events: str = "segment.events"
    output: str = "conversions.outbox"
    dlq: str = "conversions.dlq"
    prefix: str = "conversions"


@dataclass(frozen=True)
class LoopResult:
    story: ConversionStory
    conversion: dict[str, Any] | None
    exit_code: int | None

    @property
    def ok(self) -> bool:
        return self.conversion is not None and self.exit_code == 0


def stage_env(bootstrap: str, topics: LoopTopics, state_dir: Path,
              metrics_port: int) -> dict[str, str]:
    """The variables ``processor conversions`` gets on top of the caller's environment."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROCESSOR_CONV_EVENT_TOPICS": topics.events,
        "PROCESSOR_CONV_IDENTIFY_TOPICS": f"{topics.raw},{topics.enriched}",
        "PROCESSOR_CONV_OUTPUT_TOPIC": topics.output,
        "PROCESSOR_CONV_DLQ_TOPIC": topics.dlq,
        "PROCESSOR_CONV_TOPIC_PREFIX": topics.prefix,
        "PROCESSOR_CONV_GROUP_ID": f"demo-conversions-{uuid.uuid4().hex[:8]}",
        "PROCESSOR_CONV_AUDIENCES_FILE": str(AUDIENCES),
        "PROCESSOR_CONV_STATE_DIR": str(state_dir),
        "PROCESSOR_CONV_SETTLE_DELAY": SETTLE_DELAY,
        "PROCESSOR_METRICS_PORT": str(metrics_port),
        "PROCESSOR_METRICS_HOST": "127.0.0.1",
        "PROCESSOR_COMMIT_INTERVAL": "250ms",
        "PROCESSOR_LAG_INTERVAL": "1s",
        "PROCESSOR_LOG_FORMAT": os.environ.get("PROCESSOR_LOG_FORMAT", "console"),
    }


def settings_of(env: Mapping[str, str]) -> ConversionSettings:
    """The settings the stage will read from ``env`` (the same variables, validated)."""
    environ = {**os.environ, **env}
    fields = ConversionSettings.model_fields
    return load_as(ConversionSettings, {
        name: environ[str(field.validation_alias)] for name, field in fields.items()
        if str(field.validation_alias) in environ})


def create_stage_topics(bootstrap: str, settings: ConversionSettings) -> None:
    """What the stage's plan lists and the cluster lacks, as the plan says: as many
    partitions as the widest input, changelogs compacted. Then the plan, checked."""
    plan = conversion_topics.needs(settings)
    found = cluster_topics(settings)
    partitions = conversion_topics.suggested_partitions(plan, found)
    missing = [need for need in plan if found.get(need.name) is None]
    create_topics(bootstrap, {n.name: partitions for n in missing if n.cleanup_policy != "compact"})
    create_topics(bootstrap, {n.name: partitions for n in missing if n.cleanup_policy == "compact"},
                  config={"cleanup.policy": "compact"})
    say("The stage's topics (`processor conversions topics`):")
    for line in conversion_topics.render(plan, cluster_topics(settings)).splitlines():
        say(f"  {line}" if line else "")


def produce(bootstrap: str, topic: str, key: str, event: dict[str, Any], shown: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, orjson.dumps(event), key.encode())
    producer.flush(30)
    say(f"  → {topic}: {shown}")


def first(bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool],
          timeout: float, alive: Callable[[], bool]) -> dict[str, Any] | None:
    """The first committed JSON value of ``topic`` that ``match`` accepts, within
    ``timeout`` and while ``alive``; None otherwise."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and alive():
            message = consumer.poll(0.5)
            data = message.value() if message is not None and message.error() is None else None
            if not data:
                continue
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and match(value):
                return value
    finally:
        consumer.close()
    return None


def wait_for_metric(port: int, name: str, at_least: float, timeout: float,
                    alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        lines = metric_lines(port)
        if lines is not None and metric_total(lines, name) >= at_least:
            return True
        time.sleep(0.25)
    return False


def _before(observed_ms: int, entry_ts: int) -> str:
    minutes = max(0, entry_ts - observed_ms // 1000) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days} d {hours} h {minutes} min before the conversion"


PLATFORM_OF_CLICK = {"google": "google", "fbc": "meta", "fbp": "meta"}


def show_conversion(record: dict[str, Any], story: ConversionStory) -> None:
    """The record field by field: who, when, where to, which clicks, and the keys."""
    raw = orjson.dumps(record)
    entry_ts = int(record["entry_ts"])
    say(f"  conversion_id  {record['conversion_id']} (Meta's event_id, Google's transaction id)")
    say(f"  audience       {record['audience']}, entered at {record['conversion_time']} "
        "(the mql_at trait)")
    say(f"  person         {record['person_key']}, anonymousId {record['anonymous_id']}")
    for platform, fields in record["destinations"].items():
        shown = ", ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, dict))
        say(f"  send to        {platform}: {shown}")
    for name, click in record["clicks"].items():
        source = f" (built from the {click['source']})" if click.get("source") == "fbclid" else ""
        say(f"  click          {PLATFORM_OF_CLICK.get(name, name)} {click['type']}={click['value']}"
            f"{source}")
        say(f"                   first observed {iso(click['observed_at_ms'] / 1000)}, "
            f"{_before(click['observed_at_ms'], entry_ts)}")
    for name, value in record.get("context", {}).items():
        say(f"  context        {name}={value}")
    for platform, keys in record["matching"].items():
        for name, digest in keys.items():
            say(f"  match key      {platform} {name}={digest}")
    if story.email.encode() in raw.lower() or b"@" in raw:
        say("  raw email      FOUND: the record carries an email address")
    else:
        say(f"  raw email      none: the match keys are SHA-256 hashes, and no '@' is in the "
            f"record's {len(raw)} bytes")


KEY_METRICS = ("conversions_entries_total", "conversions_written_total",
               "conversions_clicks_captured_total", "conversions_identity_links_total")


def show_metrics(port: int) -> None:
    lines = metric_lines(port)
    if lines is None:
        say(f"(the conversions stage's metrics on :{port} did not answer)")
        return
    heading(f"From the conversions stage's /metrics on :{port}")
    for line in lines:
        if line.startswith(KEY_METRICS) and not line.endswith(" 0.0"):
            say(f"  {line}")
    dead = [line for line in lines if line.startswith("conversions_events_total")
            and 'outcome="dead_lettered"' in line and not line.endswith(" 0.0")]
    for line in dead:
        say(f"  {line}")
    if dead:
        say("  (dead letters: the enrichment samples that are not JSON or name nobody)")


def run_loop(bootstrap: str, topics: LoopTopics, workdir: Path, *,
             send: Sender = send_conversions, timeout: float = 60.0) -> LoopResult:
    """The conversions part of the demo on a running broker whose ``topics.raw`` is
    enriched into ``topics.enriched`` by a running ``processor run``."""
    story = ConversionStory(now=time.time())
    port = free_port()
    env = stage_env(bootstrap, topics, workdir / "conversions-state", port)
    create_stage_topics(bootstrap, settings_of(env))
    say(f"Starting: {sys.executable} -m processor conversions "
        f"(audiences: {AUDIENCES.name}, settle delay {SETTLE_DELAY})")
    stage = subprocess.Popen([sys.executable, "-m", "processor", "conversions"],
                             env={**os.environ, **env})
    conversion: dict[str, Any] | None = None
    try:
        alive = lambda: stage.poll() is None  # noqa: E731
        say(f"Producing the story of an invented visitor ({story.anonymous_id}, later "
            f"{story.user_id}):")
        produce(bootstrap, topics.events, story.anonymous_id, story.page_view(),
                f"page view 3 days ago, landing with ?gclid={story.gclid}"
                f"&fbclid={story.fbclid}")
        identify = story.identify()
        produce(bootstrap, topics.raw, story.user_id, identify,
                f"identify a day ago: {story.anonymous_id} is {story.user_id}, with an email")
        enriched_id = output_message_id(identify["messageId"], "")
        enriched = first(bootstrap, topics.enriched, lambda e: e.get("messageId") == enriched_id,
                         timeout, alive)
        if enriched is not None:
            traits = enriched["traits"]
            added = sum(1 for name in traits if name.startswith("clearbit_"))
            employees = traits.get("clearbit_company_metrics_employees")
            say(f"  ← {topics.enriched}: processor run added {added} clearbit_ traits "
                f"(clearbit_company_metrics_employees={employees})")
        # The trait change comes once the visitor is linked, as it would in life (days
        # later): the settle delay is for clicks in flight, not for a link not yet read.
        if wait_for_metric(port, "conversions_identity_links_total", 1, timeout, alive):
            produce(bootstrap, topics.raw, story.user_id, story.becomes_mql(),
                    f"identify now: lifecycle=MQL, mql_at={iso(story.mql_at)} (2 minutes ago)")
            conversion = first(bootstrap, topics.output,
                               lambda c: c.get("person_key") == story.user_id
                               and c.get("entry_ts") == story.mql_at, timeout, alive)
        if conversion is None:
            say(f"No conversion for {story.user_id} on {topics.output} within {timeout:.0f}s")
        else:
            heading(f"The conversion on {topics.output}")
            show_conversion(conversion, story)
            send(bootstrap, topics.output)
            # Counted when the broker confirms the write, which may come a moment after
            # the record is readable.
            wait_for_metric(port, "conversions_written_total", 1, 10, alive)
        show_metrics(port)
    finally:
        if stage.poll() is None:
            stage.send_signal(signal.SIGTERM)
        try:
            code = stage.wait(60)
        except subprocess.TimeoutExpired:
            stage.kill()
            code = stage.wait()
    say(f"processor conversions: exit code {code}")
    return LoopResult(story, conversion, code)
