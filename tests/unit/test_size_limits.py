"""Record sizes and limits: what fits a topic, and what a dead letter leaves out when not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.adapters.json_codec import JsonCodec
from processor.core.cache import TTLCache
from processor.core.enrichment.answers import Found, Remembered
from processor.core.errors import InvalidEmailError, OutputTooLargeError
from processor.core.records import Headers, Record
from processor.runtime.dead_letters import ENRICHMENT
from processor.runtime.size_limits import TopicLimits, record_size, usable
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.pipeline import Pipeline, Topics
from tests.fakes import FakeClock, FakeLookups, FakeSink, RecordingSensor, identify, record

TOPICS = Topics("identify.raw", "identify.enriched", "identify.dlq")
LIMIT = 10_000


@pytest.fixture(scope="module")
def producer() -> Iterator[Producer]:
    """librdkafka sizes a record when it is produced, before any broker is involved."""
    client = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": LIMIT,
                       "log_level": 0, "queue.buffering.max.messages": 10_000_000,
                       "queue.buffering.max.kbytes": 2_000_000})
    yield client
    client.purge()
    client.flush(0)


header_values = st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=100))
headers = st.lists(st.tuples(st.text(max_size=50), header_values), max_size=6)


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=400)), headers=headers,
       slack=st.integers(0, 50))
def test_what_fits_by_our_count_librdkafka_takes(producer: Producer, key: bytes | None,
                                                 headers: Headers, slack: int) -> None:
    # A value that brings our count to the limit, or just under it.
    value = b"x" * max(0, LIMIT - record_size(key, b"", headers) - slack)
    if record_size(key, value, headers) <= LIMIT:
        producer.produce("t", value, key, headers=headers)  # raises MSG_SIZE_TOO_LARGE if not
    producer.purge()


def test_the_count_is_tight_enough_to_matter(producer: Producer) -> None:
    # One byte over by our count is at most a few bytes under librdkafka's limit.
    value = b"x" * (LIMIT - record_size(None, b"", None) + 1)
    with pytest.raises(KafkaException):
        producer.produce("t", value + b"y" * 8)
    producer.purge()


def test_a_topic_takes_its_limit_less_the_batch_and_a_compression_margin() -> None:
    assert usable(1_048_588) == 1_048_588 - 61 - 64 - 256
    limits = TopicLimits.of_topics({"out": 1_048_588, "dlq": 2_000_000}, producer_max=1_500_000)
    assert limits.limit("out") == usable(1_048_588)
    assert limits.limit("dlq") == 1_500_000  # a lower producer limit wins
    assert limits.limit("elsewhere") is None


def test_an_output_over_the_limit_is_refused_with_its_sizes() -> None:
    limits = TopicLimits({"out": 1000})
    source = Record("in", 0, 7, b"{}")
    assert limits.refusal("out", b"k", b"v" * 900, None, source) is None
    refusal = limits.refusal("out", b"k", b"v" * 1000, None, source)
    assert isinstance(refusal, OutputTooLargeError)
    assert refusal.reason == "output_too_large"
    assert refusal.record is source
    assert "(1037 bytes)" in refusal.message
    assert "(1000 bytes)" in refusal.message
    assert limits.refusal("other", b"k", b"v" * 10**6, None, source) is None


def letter_of(key: bytes | None, value: bytes, own: Headers, limit: int | None) -> Any:
    source = Record("identify.raw", 2, 41, value, key=key, headers=own)
    return ENRICHMENT.letter(source, InvalidEmailError("bad address", source), 1_700_000_000_000,
                             limit)


@pytest.mark.parametrize(("key", "value", "own", "omitted"), [
    (b"k", b"v" * 100, [("h", b"1")], ()),
    (b"k", b"v" * 5000, [("h", b"1")], ("value",)),
    (b"k", b"v" * 100, [("h", b"1" * 5000)], ("headers",)),
    (b"k" * 5000, b"v" * 100, [("h", b"1")], ("key",)),
    (b"k", b"v" * 5000, [("h", b"1" * 5000)], ("value", "headers")),
    (b"k" * 5000, b"v" * 5000, [("h", b"1" * 5000)], ("value", "headers", "key")),
], ids=["whole", "no-value", "no-headers", "no-key", "no-value-no-headers", "nothing"])
def test_a_dead_letter_leaves_out_what_it_must_and_says_so(
        key: bytes, value: bytes, own: Headers, omitted: tuple[str, ...]) -> None:
    limit = 4000
    letter = letter_of(key, value, own, limit)
    assert letter.omitted == omitted
    assert record_size(letter.key, letter.value, letter.headers) <= limit
    found = dict(letter.headers)
    # The coordinates and the reason are always there.
    assert found["__connect.errors.topic"] == b"identify.raw"
    assert found["__connect.errors.partition"] == b"2"
    assert found["__connect.errors.offset"] == b"41"
    assert found["__enrichment.errors.reason"] == b"invalid_email"
    assert letter.key == (None if "key" in omitted else key)
    assert letter.value == (None if "value" in omitted else value)
    assert ("h" in found) == ("headers" not in omitted)
    if omitted:
        assert found["__enrichment.errors.omitted"] == ",".join(omitted).encode()
        assert found["__enrichment.errors.original.bytes"] == str(
            record_size(key, value, own)).encode()
    else:
        assert "__enrichment.errors.omitted" not in found
    assert ENRICHMENT.original(letter.headers) == ([] if "headers" in omitted else own)


def test_without_a_limit_a_dead_letter_is_whole() -> None:
    assert letter_of(b"k", b"v" * 10**6, [], None).omitted == ()


class Harness:
    def __init__(self, transactional: bool, output_limit: int, dlq_limit: int) -> None:
        self.sink, self.sensor, clock = FakeSink(), RecordingSensor(), FakeClock()
        self.pipeline = Pipeline(
            topics=TOPICS, codec=JsonCodec(), sink=self.sink, lookups=FakeLookups(),
            sensor=self.sensor, clock=clock,
            memory=LookupCache(cache=TTLCache[Remembered](10, clock), codec=JsonCodec(),
                               clock=clock, found_ttl=60, not_found_ttl=60),
            transactional=transactional,
            limits=TopicLimits({TOPICS.output: output_limit, TOPICS.dead_letter: dlq_limit}))

    def emitted(self) -> list[tuple[str, bytes | None, bytes | None, dict[str, Any]]]:
        if self.pipeline._transactional:
            outputs = [o[:4] for o in self.pipeline.take_decided()[0]]
        else:
            self.sink.deliver()
            outputs = list(self.sink.produced)
        return [(t, k, v, dict(h or [])) for t, k, v, h in outputs]


@pytest.mark.parametrize("transactional", [False, True], ids=["at-least-once", "exactly-once"])
def test_too_large_outputs_and_dead_letters_get_their_outcomes_and_the_rest_goes_on(
        transactional: bool) -> None:
    h = Harness(transactional, output_limit=3000, dlq_limit=6000)
    big_user = identify("ada@example.com", userId="u" * 4000)
    h.pipeline.handle([
        record(big_user, offset=0, key=b"big"),                   # its output is too large
        record(identify("ada@example.com"), offset=1, key=b"k"),  # a normal one
        record(b"{" + b"x" * 7000, offset=2, key=b"junk"),        # not JSON, and too large
    ])
    h.pipeline.on_lookups([("ada@example.com", Found({"name": {"fullName": "Ada"}}, None))])
    out = {key: (topic, value, headers) for topic, key, value, headers in h.emitted()}
    assert {k: t for k, (t, _, _) in out.items()} == {
        b"big": TOPICS.dead_letter, b"k": TOPICS.output, b"junk": TOPICS.dead_letter}
    (_, value, headers), (_, enriched, _), (_, junk, junk_headers) = (
        out[b"big"], out[b"k"], out[b"junk"])
    assert value == orjson.dumps(big_user)  # the input, whole
    assert headers["__enrichment.errors.reason"] == b"output_too_large"
    assert "__enrichment.errors.omitted" not in headers
    assert orjson.loads(enriched or b"")["traits"]["clearbit_person_name_full_name"] == "Ada"
    assert junk is None
    assert junk_headers["__enrichment.errors.reason"] == b"not_json"
    assert junk_headers["__enrichment.errors.omitted"] == b"value"
    h.pipeline.report()
    assert h.sensor.events == {("dead_lettered", "output_too_large"): 1, ("enriched", ""): 1,
                               ("dead_lettered", "not_json"): 1}
    assert h.sensor.trimmed == {"not_json": 1}
    if not transactional:
        assert h.pipeline.advance() == {(TOPICS.input, 0): 3}
