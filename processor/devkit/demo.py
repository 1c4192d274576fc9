"""``make run``: both stages on this machine, start to finish, then everything stopped.

1. a Kafka broker (``KAFKA_BOOTSTRAP_SERVERS`` if set, else the local one from
   Maven Central's jars) and the Clearbit-compatible server;
2. the three topics, and a handful of sample Identify events (found, free mail,
   anonymous, a repeat, skips, a malformed one...);
3. ``processor run`` as its own process, exactly as in production;
4. the enriched events and the dead letters that come out, and the counts
   from ``/metrics``;
5. with ``processor run`` still running, the conversions stage on the same topics
   (``processor.devkit.conversions_demo``): one visitor from an ad click to the
   conversion record; then SIGTERM to both processes and everything stopped.

``--format avro`` (``make run FORMAT=avro``) does the same in Avro: a schema registry
(``SCHEMA_REGISTRY_URL`` if set, else the local Apicurio Registry from Maven Central's
jars), the sample events produced in the Confluent wire format, the processor run with
``PROCESSOR_INPUT_FORMAT=avro`` and ``PROCESSOR_OUTPUT_FORMAT=avro``, and the outputs
decoded with the schema the registry names. The conversions stage reads JSON only, so
its part is left out in Avro.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from processor.core.clock import SystemClock
from processor.devkit.broker import LocalKafka, create_topics
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.conversions_demo import LoopResult, LoopTopics, run_loop
from processor.devkit.demo_console import RULE, free_port, metric_lines, say
from processor.devkit.registry import LocalRegistry
from processor.devkit.samples import demo_events

API_KEY = "sk_test_local"


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        say(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={given}")
        yield given
        return
    say("Kafka: starting a local broker (Apache Kafka's jars from Maven Central)...")
    broker = LocalKafka()
    broker.start()
    say(f"Kafka: ready at {broker.bootstrap_servers} (log: {broker.log_path})")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()
        say("Kafka: stopped")


@contextlib.contextmanager
def schema_registry(avro: bool) -> Iterator[str | None]:
    """The registry's URL in Avro mode (``SCHEMA_REGISTRY_URL``, else a local one)."""
    given = os.environ.get("SCHEMA_REGISTRY_URL")
    if not avro:
        yield None
    elif given:
        say(f"Schema registry: using SCHEMA_REGISTRY_URL={given}")
        yield given
    else:
        say("Schema registry: starting Apicurio Registry (from Maven Central)...")
        with LocalRegistry() as registry:
            say(f"Schema registry: ready at {registry.url} (log: {registry.log_path})")
            yield registry.url
        say("Schema registry: stopped")


def produce(bootstrap: str, topic: str, registry_url: str | None) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    events = demo_events()
    encode: Callable[[dict[str, Any]], bytes] | None = None
    if registry_url:
        from processor.adapters.avro.datum import identify_to_datum  # noqa: PLC0415 - Avro only
        from processor.adapters.avro.registry import SchemaRegistry  # noqa: PLC0415 - Avro only
        from processor.adapters.avro.schemas import IDENTIFY_SCHEMA  # noqa: PLC0415 - Avro only
        from processor.adapters.avro.writer import AvroWriter  # noqa: PLC0415 - Avro only

        writer = AvroWriter(SchemaRegistry({"url": registry_url}), schema=IDENTIFY_SCHEMA,
                            to_datum=identify_to_datum)
        encode = lambda event: writer.encode(event, topic)  # noqa: E731
    for label, key, json_value in events:
        value, shown = json_value, label
        if encode is not None:
            try:
                value = encode(orjson.loads(json_value))
            except orjson.JSONDecodeError:  # the malformed sample: not Avro either
                shown = "dead letter: the value is not in the Avro wire format"
        producer.produce(topic, value, key)
        say(f"  → {shown}")
    producer.flush(30)
    return len(events)


def output_decoder(registry_url: str | None) -> Callable[[Any], dict[str, Any]]:
    """How the demo reads the output topic: JSON, or Avro with the schema the record's id
    names in the registry (what any consumer would do)."""
    if registry_url is None:
        return lambda message: orjson.loads(message.value())
    from processor.adapters.avro.datum import enriched_from_datum  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.reader import AvroReader  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.registry import SchemaRegistry  # noqa: PLC0415 - Avro only
    from processor.adapters.avro.schemas import ENRICHED_SCHEMA  # noqa: PLC0415 - Avro only

    reader = AvroReader(SchemaRegistry({"url": registry_url}), schema=ENRICHED_SCHEMA,
                        clock=SystemClock(),
                        to_event=enriched_from_datum)
    return reader.decode


def collect(bootstrap: str, topics: list[str], expect: int, timeout: float) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe(topics)
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expect and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found


def show(messages: list[Any], output: str, decode: Callable[[Any], dict[str, Any]]) -> None:
    enriched = [m for m in messages if m.topic() == output]
    letters = [m for m in messages if m.topic() != output]
    say(f"{RULE}\nEnriched Identify events on {output} ({len(enriched)}):\n{RULE}")
    for number, message in enumerate(enriched):
        event = decode(message)
        traits = event["traits"]
        if number == 0:
            value = message.value()
            if value[:1] == b"\x00":
                say(f"Avro, schema id {int.from_bytes(value[1:5], 'big')}: {len(value)} bytes "
                    f"(as JSON: {len(orjson.dumps(event))} bytes). Decoded:")
            say(f"key={message.key()!r} (the first one in full)")
            say(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode())
            continue
        person = traits.get("clearbit_person_name_full_name")
        company = traits.get("clearbit_company_name")
        say(f"key={message.key()!r} email={traits['email']} person={person!r} "
            f"company={company!r} ({len(traits) - 1} clearbit_ traits)")
    say(f"{RULE}\nDead letters ({len(letters)}): original bytes, and why\n{RULE}")
    for message in letters:
        headers = {k: (v or b"").decode(errors="replace") for k, v in message.headers() or []}
        say(f"key={message.key()!r} value={message.value()[:80]!r}")
        for name in ("__enrichment.errors.reason", "__connect.errors.exception.message",
                     "__connect.errors.topic", "__connect.errors.partition",
                     "__connect.errors.offset"):
            say(f"    {name}: {headers.get(name)}")


def show_metrics(port: int) -> None:
    lines = metric_lines(port)
    if lines is None:
        say(f"(metrics on :{port} not reachable)")
        return
    say(f"{RULE}\nFrom /metrics on :{port}\n{RULE}")
    for line in lines:
        if line.startswith(("enrichment_events_total", "enrichment_lookups_total",
                            "enrichment_cache_requests_total",
                            "enrichment_consumer_lag_records")) and (
                not line.endswith(" 0.0") or "lag" in line):
            say(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processor.devkit.demo",
                                     description="Both stages on this machine.")
    parser.add_argument("--format", choices=("json", "avro"), default="json",
                        help="the topics' format (avro: with a schema registry)")
    avro = parser.parse_args(argv).format == "avro"
    topics = {"input": "identify.raw", "output": "identify.enriched", "dlq": "identify.dlq"}
    with (kafka() as bootstrap, ClearbitServer(key=API_KEY) as clearbit,
          schema_registry(avro) as registry_url):
        base_url = clearbit.url
        say(f"Clearbit-compatible server: {base_url} (key {API_KEY[:3]}…)")
        create_topics(bootstrap, {topics["input"]: 3, topics["output"]: 3, topics["dlq"]: 1})
        say(f"Producing sample Identify events to {topics['input']}"
            f"{' (Avro)' if avro else ''}:")
        sent = produce(bootstrap, topics["input"], registry_url)
        metrics_port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "PROCESSOR_INPUT_TOPIC": topics["input"],
               "PROCESSOR_OUTPUT_TOPIC": topics["output"],
               "PROCESSOR_DLQ_TOPIC": topics["dlq"],
               "PROCESSOR_GROUP_ID": f"demo-{uuid.uuid4().hex[:8]}",
               "CLEARBIT_API_KEY": API_KEY, "CLEARBIT_BASE_URL": base_url,
               "PROCESSOR_METRICS_PORT": str(metrics_port), "PROCESSOR_LAG_INTERVAL": "1s",
               "PROCESSOR_LOG_FORMAT": os.environ.get("PROCESSOR_LOG_FORMAT", "console")}
        if registry_url:
            env.update({"PROCESSOR_INPUT_FORMAT": "avro", "PROCESSOR_OUTPUT_FORMAT": "avro",
                        "SCHEMA_REGISTRY_URL": registry_url})
        say(f"Starting: {sys.executable} -m processor run")
        processor = subprocess.Popen([sys.executable, "-m", "processor", "run"], env=env)
        loop: LoopResult | None = None
        try:
            # 3 found + 1 repeat are enriched; 3 dead letters; the rest are skips.
            messages = collect(bootstrap, [topics["output"], topics["dlq"]], expect=7,
                               timeout=90)
            time.sleep(2)  # let a lag measurement happen after the last commit
            show(messages, topics["output"], output_decoder(registry_url))
            show_metrics(metrics_port)
            if avro:
                say("(the conversions stage reads JSON only: `make run` shows its part)")
            else:
                say(f"{RULE}\nThe conversions stage, on the same topics\n{RULE}")
                with tempfile.TemporaryDirectory(prefix="demo-conversions-") as workdir:
                    loop = run_loop(bootstrap, LoopTopics(topics["input"], topics["output"]),
                                    Path(workdir))
        finally:
            processor.send_signal(signal.SIGTERM)
            code = processor.wait(60)
        say(f"{RULE}\nSent {sent} events; {len(messages)} came out "
            f"(the rest were skipped, see enrichment_events_total). "
            f"processor run: exit code {code}")
        if loop is not None:
            clicks = ", ".join(sorted(loop.conversion["clicks"])) if loop.conversion else "-"
            say(f"Conversions: {1 if loop.conversion else 0} for {loop.story.user_id} "
                f"(clicks: {clicks}). processor conversions: exit code {loop.exit_code}")
    ok = code == 0 and len(messages) == 7 and (loop is None or loop.ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
