"""What the conversions stage does to each record, on the shared runtime.

The stage consumes its inputs and its two repartition topics in one group:

* an input event is routed: a ``touch`` to ``by-anon`` under its anonymousId, and
  for an identify, an ``identify`` to ``by-person`` under the person;
* a ``by-anon`` record is the visitor task's: it updates the visitor store and,
  once the visitor is linked, forwards its clicks to ``by-person``;
* a ``by-person`` record is the person task's: it updates the person store and
  evaluates the audiences; an entry is scheduled ``settle_delay`` ahead in the
  store itself (a due-index key), so a restore brings the schedule back too.

Every output is held against its topic's limit first (``processor.runtime.size_limits``):
a record with an output too large for its topic is dead-lettered as
``output_too_large`` instead, and a dead letter too large leaves out what it must.
(An internal record's state change then stays in the local store without its
changelog record, until the partition is next restored.)

Each record's outputs (repartition messages, changelog writes, a dead letter) are
its slot's: at-least-once, the slot is done when the broker has confirmed every
one, so no offset is committed before the state change it caused is in its
changelog; transactional, they go in the checkpoint's transaction with the
offsets. Due entries are written out by ``pump``: the conversion first, and only
once it is confirmed (or in the same transaction) the membership is marked
emitted, so a crash can repeat a conversion id but never lose or change one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.core.clock import Clock
from processor.core.conversions.audiences import Audiences
from processor.core.conversions.clicks import NAME_OF
from processor.core.conversions.entries import Entry, Outcome
from processor.core.conversions.record import build_record
from processor.core.errors import FatalError, RecordError, UnreadableInternalError
from processor.core.offsets import Slot, TopicPartition
from processor.core.records import SourceRecord
from processor.runtime.dead_letters import DeadLetterHeaders
from processor.runtime.ledgered import Ledgered
from processor.runtime.ports import Output, Sink
from processor.runtime.size_limits import TopicLimits
from processor.stages.conversions import messages, people, visitors
from processor.stages.conversions.messages import Clicks, Identify, Merge, Touch
from processor.stages.conversions.ports import ConversionSensor, Decoder, Store, Stores
from processor.stages.conversions.router import route

log = logging.getLogger(__name__)

CONVERSIONS = DeadLetterHeaders("conversions")
VISITOR = b"v\x00"
PERSON = b"p\x00"
DUE = b"d\x00"  # + due time (ms, 13 digits) + \x00 + conversion id -> [person, audience, ts]
PUNCTUATE_EVERY = 0.1  # seconds between looks at the due index
STATE_EVERY = 5.0  # seconds between reports of the stores' sizes
_TOMBSTONE, _ROUTED, _NOTHING_TO_DO = ("skipped", "tombstone"), ("routed", ""), (
    "skipped", "nothing_to_do")
_VISITOR_DONE = ("processed", "visitor")


@dataclass(frozen=True)
class ConversionTopics:
    inputs: frozenset[str]
    by_anon: str
    by_person: str
    output: str
    dead_letter: str


@dataclass(frozen=True)
class ConversionOptions:
    click_ttl_ms: int
    settle_ms: int
    future_skew: int  # seconds
    region: str
    transactional: bool = False


class _Unconfirmed:
    """A record's outputs not yet confirmed; its slot is done when none are left."""

    __slots__ = ("left", "refused", "slot")

    def __init__(self, slot: Slot[_Payload], left: int, refused: list[str]) -> None:
        self.slot = slot
        self.left = left
        self.refused = refused

    def __call__(self, error: Any, message: Any) -> None:
        if error is not None:
            self.refused.append(f"{message.topic() if message else '?'}: {error}")
            return
        self.left -= 1
        if self.left == 0:
            self.slot.done = True


_Payload = list[Output] | _Unconfirmed


class ConversionPipeline(Ledgered[_Payload]):
    """Implements ``processor.runtime.ports.Pipeline`` for the conversions stage."""

    def __init__(self, *, topics: ConversionTopics, options: ConversionOptions,
                 audiences: Audiences, decoder: Decoder, sink: Sink, visitor_stores: Stores,
                 person_stores: Stores, sensor: ConversionSensor, clock: Clock,
                 limits: TopicLimits | None = None) -> None:
        super().__init__()
        self._topics = topics
        self._limits = limits or TopicLimits()
        self._trimmed: Counter[str] = Counter()
        self._options = options
        self._audiences = audiences
        self._kept_traits = audiences.traits
        self._decoder = decoder
        self._sink = sink
        self._visitors = visitor_stores
        self._people = person_stores
        self._sensor = sensor
        self._clock = clock
        # Transactional: due conversions (and their state changes) for the next commit, by
        # the person partition they belong to.
        self._free: dict[int, list[Output]] = {}
        self._writing: set[str] = set()  # at-least-once: conversion ids not yet confirmed
        self._last_punctuation = 0.0
        self._last_state_report = -STATE_EVERY
        self._counts: Counter[tuple[str, str]] = Counter()
        self._by_topic: Counter[str] = Counter()
        self._clicks: Counter[str] = Counter()
        self._entries: Counter[str] = Counter()
        self._skips: Counter[tuple[str, str]] = Counter()
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._written: Counter[str] = Counter()
        self._links = 0
        self.refused: list[str] = []
        self.fatal: FatalError | None = None

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        log.info("conversions: %d audience(s): %s", len(self._audiences),
                 ", ".join(a.key for a in self._audiences))

    def stop(self) -> None:
        clean = not self._options.transactional
        self._visitors.close(self._visitors.owned(), clean)
        self._people.close(self._people.owned(), clean)

    def poll_timeout(self) -> float:
        return 0.1

    def assigned(self, tps: list[TopicPartition]) -> None:
        """Stores open (and restore) when their partition's first record comes."""

    # --- intake -----------------------------------------------------------------

    def handle(self, records: Sequence[SourceRecord]) -> None:
        if not records:
            return
        now_ms = int(self._clock.time() * 1000)
        # Looked up once a batch: the page path is a few microseconds a record.
        ledger, by_topic, counts = self._ledger, self._by_topic, self._counts
        outputs_of, refuse, emit = self._outputs_of, self._refuse_too_large, self._emit
        for record in records:
            topic = record.topic() or ""
            partition = record.partition() or 0
            slot = ledger.partition((topic, partition)).track(record.offset() or 0)
            by_topic[topic] += 1
            outputs: list[Output] = []
            if record.value() is None:
                counts[_TOMBSTONE] += 1
            else:
                try:
                    outputs = outputs_of(record, topic, partition, now_ms)
                    refuse(record, outputs)
                except RecordError as error:
                    outputs = [self._dead_letter(record, error.with_record(record), now_ms)]
            emit(slot, outputs)
        self._sensor.consumed(len(records))

    def _refuse_too_large(self, record: SourceRecord, outputs: list[Output]) -> None:
        """Raise ``OutputTooLargeError`` when one of ``outputs`` is too large for its topic."""
        for output in outputs:
            refusal = self._limits.refusal(output.topic, output.key, output.value,
                                           output.headers, record)
            if refusal is not None:
                raise refusal

    def _dead_letter(self, record: SourceRecord, error: RecordError, now_ms: int) -> Output:
        topic = self._topics.dead_letter
        letter = CONVERSIONS.letter(record, error, now_ms, self._limits.limit(topic))
        self._counts[("dead_lettered", error.reason)] += 1
        if letter.omitted:
            self._trimmed[error.reason] += 1
        return Output(topic, letter.key, letter.value, letter.headers)

    def _outputs_of(self, record: SourceRecord, topic: str, partition: int,
                    now_ms: int) -> list[Output]:
        if topic == self._topics.by_anon:
            return self._visitor(self._visitors.partition(partition), record, now_ms)
        if topic == self._topics.by_person:
            return self._person(self._people.partition(partition), record, now_ms)
        event = self._decoder.decode(record)
        routed = route(event, record.timestamp()[1] or now_ms, self._kept_traits,
                       self._options.region)
        for dropped in routed.dropped:
            self._dropped[(dropped.platform.value, dropped.reason.value)] += 1
        outputs = []
        if (touch := routed.touch) is not None:
            clicks = self._clicks
            for kind in touch.clicks.clicks:
                clicks[NAME_OF[kind]] += 1
            outputs.append(Output(self._topics.by_anon, touch.anonymous_id.encode(),
                                  messages.encode(touch), None))
        if routed.identify is not None:
            outputs.append(self._message(self._topics.by_person, routed.identify.person,
                                         routed.identify))
        self._counts[_ROUTED if outputs else _NOTHING_TO_DO] += 1
        return outputs

    def _message(self, topic: str, key: str, message: messages.Message) -> Output:
        return Output(topic, key.encode(), messages.encode(message), None)

    def _read(self, record: SourceRecord) -> messages.Message:
        try:
            return messages.decode(record.value())
        except messages.UnreadableMessage as error:
            raise UnreadableInternalError(f"{record.topic()}: {error}") from None

    # --- the visitor task -------------------------------------------------------

    def _visitor(self, store: Store, record: SourceRecord, now_ms: int) -> list[Output]:
        message = self._read(record)
        if not isinstance(message, Touch):
            raise UnreadableInternalError(f"{type(message).__name__} on the visitor topic")
        key = VISITOR + message.anonymous_id.encode()
        done = visitors.touch(visitors.Visitor.from_bytes(store.get(key)), message, now_ms,
                              self._options.click_ttl_ms)
        outputs = [store.put(key, done.visitor.to_bytes())] if done.changed else []
        if done.linked:
            self._links += 1
        for forward in done.forwards:
            person = forward.person if isinstance(forward, Clicks | Merge) else ""
            outputs.append(self._message(self._topics.by_person, person, forward))
        self._counts[_VISITOR_DONE] += 1
        return outputs

    # --- the person task ----------------------------------------------------------

    def _person(self, store: Store, record: SourceRecord, now_ms: int) -> list[Output]:
        message = self._read(record)
        if isinstance(message, Touch):
            raise UnreadableInternalError("a touch on the person topic")
        key = PERSON + message.person.encode()
        before = people.Person.from_bytes(store.get(key))
        outputs: list[Output] = []
        due_ms = now_ms + self._options.settle_ms
        if isinstance(message, Identify):
            evaluated = people.identify(before, message, self._audiences, now_ms / 1000,
                                        self._options.future_skew)
            after = evaluated.person
            for audience, outcome in evaluated.outcomes:
                if outcome is Outcome.ENTERED:
                    self._entries[audience] += 1
                elif outcome not in (Outcome.EXITED, Outcome.NOT_MATCHED):
                    self._skips[(audience, outcome.value)] += 1
            outputs += [self._schedule(store, entry, due_ms) for entry in evaluated.entries]
        elif isinstance(message, Clicks):
            linked = people.clicks(before, message, now_ms, self._options.click_ttl_ms)
            after = linked.person
            if linked.late_clicks:
                self._skips[("", "late_click")] += linked.late_clicks
        elif isinstance(message, Merge):
            after, moved = people.hand_over(before, message)
            if moved is not None:
                outputs.append(self._message(self._topics.by_person, moved.person, moved))
        else:
            adopted = people.adopt(before, message)
            after = adopted.person
            outputs += [self._schedule(store, entry, due_ms) for entry in adopted.pending]
        if after != before:
            outputs.insert(0, store.put(key, after.to_bytes()))
        self._counts[("processed", "person")] += 1
        return outputs

    def _schedule(self, store: Store, entry: Entry, due_ms: int) -> Output:
        due = DUE + b"%013d\x00" % due_ms + entry.event_id.encode()
        return store.put(due, orjson.dumps([entry.person_key, entry.audience, entry.ts]))

    # --- writing due conversions ---------------------------------------------------------

    def pump(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_punctuation < PUNCTUATE_EVERY:
            return
        self._last_punctuation = now
        if now - self._last_state_report >= STATE_EVERY:
            self._last_state_report = now
            for stores in (self._visitors, self._people):
                self._sensor.state_records(stores.name, stores.estimated_records())
        now_ms = int(self._clock.time() * 1000)
        for partition in self._people.owned():
            store = self._people.partition(partition)
            for due, value in list(store.items(DUE)):
                if int(due[len(DUE):len(DUE) + 13]) > now_ms:
                    break
                self._write_due(partition, store, due, value, now_ms)

    def _write_due(self, partition: int, store: Store, due: bytes, value: bytes,
                   now_ms: int) -> None:
        event_id = due[len(DUE) + 14:].decode()
        if event_id in self._writing:
            return
        person_key, audience_key, ts = orjson.loads(value)
        key = PERSON + person_key.encode()
        person = people.Person.from_bytes(store.get(key))
        audience = self._audiences.get(audience_key)
        if audience is None or not people.pending(person, audience_key, ts, event_id):
            self._settle_due(partition, store, due, key, None)  # left the config, handed over
            return
        record = build_record(Entry(audience_key, person_key, ts, event_id), audience,
                              user_id=person.user_id, anonymous_id=person.anonymous_id,
                              clicks=person.clicks.attach(ts, now_ms, self._options.click_ttl_ms),
                              visit=person.visit, keys=person.keys)
        conversion = Output(self._topics.output, event_id.encode(), orjson.dumps(record), None)
        if self._options.transactional:
            self._free.setdefault(partition, []).append(conversion)
            self._settle_due(partition, store, due, key, (audience_key, ts))
            self._written[audience_key] += 1
            return
        self._writing.add(event_id)

        def confirmed(error: Any, _message: Any) -> None:
            self._writing.discard(event_id)
            if error is not None:
                self.refused.append(f"{self._topics.output}: {error}")
                return
            self._written[audience_key] += 1
            # Revoked meanwhile: the next owner finds it pending and writes it again, with
            # the same id.
            if partition in self._people.owned():
                self._settle_due(partition, store, due, key, (audience_key, ts))

        self._sink.produce(conversion.topic, conversion.key, conversion.value, None, confirmed)

    def _settle_due(self, partition: int, store: Store, due: bytes, key: bytes,
                    emitted: tuple[str, int] | None) -> None:
        """Drop the due entry and, if it was written, mark its membership emitted."""
        writes = [store.delete(due)]
        if emitted is not None:
            person = people.emitted(people.Person.from_bytes(store.get(key)), *emitted)
            writes.append(store.put(key, person.to_bytes()))
        if self._options.transactional:
            self._free.setdefault(partition, []).extend(writes)
            return
        for write in writes:
            self._sink.produce(write.topic, write.key, write.value, None, self._on_changelog,
                               partition=write.partition)

    def _on_changelog(self, error: Any, message: Any) -> None:
        if error is not None:
            self.refused.append(f"{message.topic() if message else '?'}: {error}")

    # --- the ledger -------------------------------------------------------------------

    def _emit(self, slot: Slot[_Payload], outputs: list[Output]) -> None:
        if self._options.transactional or not outputs:
            slot.payload = outputs
            slot.done = True
            return
        delivery = _Unconfirmed(slot, len(outputs), self.refused)
        slot.payload = delivery
        produce = self._sink.produce
        for output in outputs:
            produce(output.topic, output.key, output.value, output.headers, delivery,
                    partition=output.partition)

    def take_decided(self) -> tuple[list[Output], dict[TopicPartition, int]]:
        taken, positions = self._ledger.take_done()
        outputs = [o for slot in taken if isinstance(slot.payload, list) for o in slot.payload]
        for free in self._free.values():
            outputs += free
        self._free = {}
        return outputs, positions

    def drop(self, tps: list[TopicPartition], *, committed: bool = False) -> None:
        """Revoked, lost, or rewound after an aborted transaction: forget their records,
        and close their stores. Only after a revoke's final commit are the local copies
        trusted again; lost or rewound, the next use restores them from the changelog."""
        for tp in tps:
            self._ledger.drop(tp)
        clean = committed
        if not committed:  # their stores restart from the changelog: so must these
            for t, p in tps:
                if t == self._topics.by_person:
                    self._free.pop(p, None)
        for stores, topic in ((self._visitors, self._topics.by_anon),
                              (self._people, self._topics.by_person)):
            mine = [p for t, p in tps if t == topic and p in stores.owned()]
            if mine:
                stores.close(mine, clean)

    # --- reporting ----------------------------------------------------------------

    def report(self) -> None:
        sensor = self._sensor
        if self._counts:
            sensor.outcomes(dict(self._counts))
            self._counts.clear()
        if self._trimmed:
            sensor.dead_letters_trimmed(dict(self._trimmed))
            self._trimmed.clear()
        for counter, hook in ((self._by_topic, sensor.records),
                              (self._clicks, sensor.clicks_captured),
                              (self._entries, sensor.entries),
                              (self._written, sensor.conversions_written)):
            if counter:
                hook(dict(counter))
                counter.clear()
        if self._skips:
            sensor.skipped(dict(self._skips))
            self._skips.clear()
        if self._dropped:
            sensor.match_keys_dropped(dict(self._dropped))
            self._dropped.clear()
        if self._links:
            sensor.identity_links(self._links)
            self._links = 0
