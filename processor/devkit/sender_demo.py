"""``make run``, the sending part: ``processor conversions send`` posting the conversions
of the demo to the Meta- and Google-compatible servers, then what each platform got.

``send_conversions(bootstrap, topic)`` is ``conversions_demo.Sender``: called once the
story's conversion is on ``topic``. It starts both servers on free ports, creates the
sender's own topics (delay and audit; the dead-letter topic is the stage's), runs the
sender as its own process with the servers' local credentials exactly as against the
real hosts, waits for every conversion on ``topic`` to have its results on the audit
topic, shows them and what each server accepted (deduplicated as the platforms do),
then stops the sender with SIGTERM.

Alone (a broker and a few sample conversions of its own)::

    python -m processor.devkit.sender_demo
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from processor.devkit.broker import LocalKafka, create_topics
from processor.devkit.conversion_samples import AUDIENCES, sample_conversion, sender_environment
from processor.devkit.demo_console import free_port, heading, metric_lines, say
from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer

DEMO_AUDIENCES = Path(__file__).with_name("demo_audiences.yaml")
SENT_TOPIC = "conversions.sent"
DELAY_TOPIC = "conversions.delayed"
DLQ_TOPIC = "conversions.dlq"


def _conversions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every conversion on ``topic`` now (committed ones)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    metadata = consumer.list_topics(topic, timeout=30)
    left = len(metadata.topics[topic].partitions)
    consumer.subscribe([topic])
    found = []
    deadline = time.monotonic() + 30
    try:
        while left and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                left -= 1  # the end of one partition
                continue
            value = orjson.loads(message.value() or b"null")
            if isinstance(value, dict) and "conversion_id" in value:
                found.append(value)
    finally:
        consumer.close()
    return found


def _results(bootstrap: str, wanted: set[tuple[str, str]], timeout: float,
             alive: Callable[[], bool]) -> list[dict[str, Any]]:
    """The audit records of ``wanted`` (destination, conversion id) pairs: the audit topic
    may hold earlier runs' too."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([SENT_TOPIC])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(wanted) and time.monotonic() < deadline and alive():
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            result = orjson.loads(message.value() or b"{}")
            pair = (result.get("destination"), result.get("conversion_id"))
            if pair in wanted:
                found[pair] = result
    finally:
        consumer.close()
    return list(found.values())


@contextmanager
def _sender(bootstrap: str, topic: str, audiences: Path, meta: MetaServer,
            google: GoogleServer, port: int) -> Iterator[subprocess.Popen[bytes]]:
    topics = {"outbox": topic, "delayed": DELAY_TOPIC, "sent": SENT_TOPIC, "dlq": DLQ_TOPIC,
              "group": f"demo-sender-{uuid.uuid4().hex[:8]}"}
    env = sender_environment(bootstrap, topics, str(audiences), meta, google,
                             PROCESSOR_METRICS_PORT=str(port),
                             PROCESSOR_METRICS_HOST="127.0.0.1", PROCESSOR_CONV_LINGER="250ms",
                             PROCESSOR_LOG_FORMAT=os.environ.get("PROCESSOR_LOG_FORMAT",
                                                                 "console"))
    say(f"Starting: {sys.executable} -m processor conversions send (Meta at {meta.url}, "
        f"Google at {google.url})")
    process = subprocess.Popen([sys.executable, "-m", "processor", "conversions", "send"],
                               env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        say(f"processor conversions send: exit code {process.returncode}")


def _show(results: list[dict[str, Any]], meta: MetaServer, google: GoogleServer,
          port: int) -> None:
    heading(f"Results on {SENT_TOPIC} ({len(results)})")
    for result in results:
        reason = f" ({result['reason']})" if result["reason"] else ""
        say(f"  {result['destination']:<6} {result['conversion_id']}  {result['status']}"
            f"{reason}  ref={result['platform_ref']}  keys={','.join(result['match_keys'])}")
    heading("What the platforms got")
    for event in meta.events():
        user = event["event"]["user_data"]
        say(f"  Meta   pixel {event['pixel_id']}: {event['event_name']} event_id="
            f"{event['event_id']} (user_data: {', '.join(sorted(user))})")
    for event in google.events():
        click = event["click"] or {}
        say(f"  Google customer {event['operating_account']}, action "
            f"{event['conversion_action']}: transactionId={event['transaction_id']} "
            f"{click.get('type', '')}={click.get('id', '')}")
    requests = [*meta.requests(api="events"), *google.requests(api="datamanager")]
    say(f"  ({len(requests)} request(s); the token only ever in the Authorization header)")
    lines = metric_lines(port) or []
    for line in lines:
        if line.startswith(("conversions_sent_total", "conversions_requests_total")) and \
                not line.endswith(" 0.0"):
            say(f"  {line}")


def _create_missing(bootstrap: str, topics: dict[str, int]) -> None:
    """The sender's topics the cluster lacks (the dead-letter topic is the stage's, with
    the partitions the stage gave it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4()}"})
    try:
        existing = set(consumer.list_topics(timeout=30).topics)
    finally:
        consumer.close()
    create_topics(bootstrap, {t: n for t, n in topics.items() if t not in existing})


def send_conversions(bootstrap: str, topic: str, audiences: Path = DEMO_AUDIENCES,
                     timeout: float = 60.0) -> None:
    """``conversions_demo.Sender``: send what is on ``topic`` and show what arrived."""
    _create_missing(bootstrap, {DELAY_TOPIC: 3, SENT_TOPIC: 3, DLQ_TOPIC: 1})
    wanted = {(destination, c["conversion_id"]) for c in _conversions(bootstrap, topic)
              for destination in c["destinations"]}
    port = free_port()
    with (MetaServer() as meta, GoogleServer() as google,
          _sender(bootstrap, topic, audiences, meta, google, port) as process):
        results = _results(bootstrap, wanted, timeout, lambda: process.poll() is None)
        _show(results, meta, google, port)
        if len(results) < len(wanted):
            say(f"Only {len(results)} of {len(wanted)} results within {timeout:.0f}s")


def main() -> int:
    """Alone: a local broker (or KAFKA_BOOTSTRAP_SERVERS) and three sample conversions."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if given else LocalKafka()
    if broker is not None:
        broker.start()
    bootstrap = given or (broker.bootstrap_servers if broker else "")
    try:
        topic = f"demo-outbox-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, {topic: 3})
        producer = Producer({"bootstrap.servers": bootstrap})
        for n, audience in enumerate(("both_7d", "meta_7d", "google_30d")):
            record = sample_conversion(n, audience, salt=topic)
            producer.produce(topic, orjson.dumps(record), record["conversion_id"].encode())
        producer.flush(30)
        with tempfile.TemporaryDirectory(prefix="sender-demo-") as folder:
            audiences = Path(folder) / "audiences.yaml"
            audiences.write_text(AUDIENCES)
            send_conversions(bootstrap, topic, audiences)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
