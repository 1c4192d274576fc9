"""Records too large for the topics they go to, on the real broker: each gets its outcome,
the records behind it come out, and a restart processes nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Message, Producer

from processor.core.enrichment.events import output_message_id
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from processor.runtime.size_limits import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, record_size, usable
from tests.harness import (
    Names,
    caught_up,
    headers_of,
    read,
    read_all,
    running_stage,
    sample,
    wait_for,
)

ROOM = usable(KAFKA_DEFAULT_MAX_MESSAGE_BYTES)  # what one record may use of a default topic


def produce_large(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    """Like any producer the input topic accepts 1 MB records from: librdkafka's own
    1,000,000-byte limit raised to the broker's."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "message.max.bytes": KAFKA_DEFAULT_MAX_MESSAGE_BYTES})
    for key, value in items:
        producer.produce(topic, value, key)
        producer.flush(30)  # one at a time: each is a batch of its own
    assert producer.flush(30) == 0


def identify_of_size(size: int, tag: str, email: str) -> bytes:
    """An identify of exactly ``size`` bytes, its userId padded."""
    event = identify(email, user_id="", message_id=tag)
    event["userId"] = "u" * (size - len(orjson.dumps(event)))
    raw = orjson.dumps(event)
    assert len(raw) == size
    return raw


TAGS = ("before", "output-too-large", "large-output", "after")
BY_OUTPUT_ID = {output_message_id(tag, ""): tag for tag in TAGS}


def tag_of(message: Message) -> str:
    """Which input a message stands for: its messageId (an output's maps back to its
    input's), the first 8 bytes of a junk value, or ``omitted@<offset>``."""
    value = message.value()
    if value is None:
        return f"omitted@{headers_of(message)['__connect.errors.offset']}"
    if not value.startswith(b"{"):
        return value[:8].decode()
    found = str(orjson.loads(value)["messageId"])
    return BY_OUTPUT_ID.get(found, found)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_too_large_for_their_topics_each_gets_its_outcome_and_a_restart_does_nothing_twice(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, delivery: str) -> None:
    email = person_email(1)
    items = [
        (b"k", orjson.dumps(identify(email, user_id="u1", message_id="before"))),
        # Its output (the userId again, and the traits) is too large for the output topic.
        (b"k", identify_of_size(ROOM - 2000, "output-too-large", email)),
        # Over librdkafka's default 1,000,000 bytes, not JSON: a whole dead letter.
        (b"k", b"junk-one" + b"x" * 1_040_000),
        # Not JSON, and too large for the dead-letter topic once explained.
        (b"k", b"junk-two" + b"x" * (ROOM - 100)),
        # An output over 1,000,000 bytes that the output topic takes.
        (b"k", identify_of_size(1_010_000, "large-output", email)),
        (b"k", orjson.dumps(identify(email, user_id="u2", message_id="after"))),
    ]
    produce_large(kafka_bootstrap, names.input, items)
    settings = names.settings(kafka_bootstrap, clearbit.url, delivery=delivery,
                              transactional_id=f"{names.group}-tx")
    for run in range(2):  # the second run must find nothing left to do
        with running_stage(settings) as stage:
            wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 60,
                     "the stage to commit every input")
            if run == 0:
                trimmed = sample(stage.sensor, "enrichment_dead_letters_trimmed_total",
                                 reason="not_json")
    out = read_all(kafka_bootstrap, [names.output, names.dlq])
    by_id: dict[str, list[Message]] = {}
    for message in out:
        by_id.setdefault(tag_of(message), []).append(message)
    assert sorted(by_id) == sorted(["before", "output-too-large", "junk-one", "omitted@3",
                                    "large-output", "after"])
    assert all(len(messages) == 1 for messages in by_id.values()), "something came out twice"
    topic = {i: m[0].topic() for i, m in by_id.items()}
    assert [topic[i] for i in ("before", "large-output", "after")] == [names.output] * 3
    assert len(by_id["large-output"][0].value() or b"") > 1_010_000
    too_large = by_id["output-too-large"][0]
    assert too_large.value() == items[1][1]  # the input, whole
    assert headers_of(too_large)["__enrichment.errors.reason"] == "output_too_large"
    assert by_id["junk-one"][0].value() == items[2][1]
    omitted = by_id["omitted@3"][0]
    headers = headers_of(omitted)
    assert omitted.value() is None
    assert omitted.key() == b"k"
    assert headers["__enrichment.errors.reason"] == "not_json"
    assert headers["__enrichment.errors.omitted"] == "value"
    assert int(headers["__enrichment.errors.original.bytes"]) == record_size(b"k", items[3][1], [])
    assert trimmed == 1


def test_the_limit_is_the_output_topics_own_and_batches_respect_it(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], names: Names,
        clearbit: ClearbitServer) -> None:
    small = kafka_topics("out-small", 3, config={"max.message.bytes": "20000"})
    names = Names(input=names.input, output=small, dlq=names.dlq, group=names.group)
    email = person_email(2)
    # 300 outputs of about 5 kB for one email come out together: one batch of 1.5 MB
    # would be refused by this topic, whatever each record's size.
    events: list[tuple[bytes, Any]] = [
        (f"k{i}".encode(), orjson.dumps(identify(email, user_id=f"u{i}", message_id=f"m{i}")))
        for i in range(300)]
    events.append((b"big", identify_of_size(16_000, "too-large", email)))
    produce_large(kafka_bootstrap, names.input, events)
    with running_stage(names.settings(kafka_bootstrap, clearbit.url)):
        out = read(kafka_bootstrap, [names.output, names.dlq], until=lambda m: len(m) >= 301)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 30, "commits")
    assert sum(1 for m in out if m.topic() == small) == 300
    (letter,) = [m for m in out if m.topic() == names.dlq]
    assert letter.key() == b"big"
    assert headers_of(letter)["__enrichment.errors.reason"] == "output_too_large"
    assert "than " + small + " takes (" + str(usable(20000)) + " bytes)" in headers_of(letter)[
        "__connect.errors.exception.message"]
