"""What happens to each record, from consumed bytes to an output, a dead letter or a skip.

The pipeline owns the per-record state of the stage and nothing else: it does
no I/O of its own, but calls the injected codec, sink, lookup submission and
sensor. It runs on one thread (the stage's), so the cache, the single-flight
table, the offset ledger and the key sequencer need no locks.

Two delivery modes share it:

* at-least-once: an output is produced as soon as it may go (per-key order
  kept by the sequencer); its slot is done when the broker confirms it, and
  ``advance`` reports positions that only ever move over done records;
* transactional (exactly-once): an output is only *decided*; the stage's
  checkpoint calls ``take_decided`` to produce the leading decided records of
  each partition inside a transaction together with the offsets that cover them.

Before anything is emitted it is held against its topic's limit
(``processor.runtime.size_limits``): an output too large becomes a dead letter
``output_too_large``, and a dead letter too large leaves out what it must.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Union

from processor.core.clock import Clock
from processor.core.enrichment.answers import (
    Enriched,
    LookupResult,
    NotFound,
    Rejected,
    Remembered,
)
from processor.core.enrichment.events import (
    LookupRequest,
    classify,
    enriched_event,
    output_key,
    output_message_id,
)
from processor.core.enrichment.outcomes import Outcome, SkipReason
from processor.core.errors import FatalError, ProviderRejectedError, RecordError
from processor.core.offsets import PartitionLedger, Slot, TopicPartition
from processor.core.records import Headers, SourceRecord, coordinates
from processor.core.sequencer import KeySequencer, Ticket
from processor.runtime.dead_letters import ENRICHMENT
from processor.runtime.ledgered import Ledgered
from processor.runtime.ports import Output, Sink
from processor.runtime.size_limits import TopicLimits
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.ports import Codec, EnrichmentSensor, Lookups

log = logging.getLogger(__name__)


class Topics(NamedTuple):
    input: str
    output: str
    dead_letter: str


class _Waiting:
    """A record whose result is not known yet (lookup in flight, or an earlier same-key
    record still waiting)."""

    __slots__ = ("abandoned", "key", "record", "request", "result", "ticket")

    def __init__(
        self, record: SourceRecord, request: LookupRequest, key: bytes | None,
        ticket: Ticket[Slot[_Payload]] | None,
    ) -> None:
        self.record = record
        self.request = request
        self.key = key
        self.ticket = ticket
        self.result: Remembered | RecordError | FatalError | None = None
        self.abandoned = False


# A slot holds its record's pending work until the result is known, then (transactional)
# its decided output.
_Payload = Union["_Waiting", Output]


def iso_timestamp(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, as Segment writes timestamps."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pipeline(Ledgered[_Payload]):
    def __init__(
        self,
        *,
        topics: Topics,
        codec: Codec,
        sink: Sink,
        lookups: Lookups,
        sensor: EnrichmentSensor,
        clock: Clock,
        memory: LookupCache,
        transactional: bool = False,
        limits: TopicLimits | None = None,
    ) -> None:
        super().__init__()
        self._topics = topics
        self._codec = codec
        self._sink = sink
        self._lookups = lookups
        self._sensor = sensor
        self._clock = clock
        self._memory = memory
        self._transactional = transactional
        self._limits = limits or TopicLimits()
        self._sequencer: KeySequencer[Slot[_Payload]] = KeySequencer()
        self._waiting: dict[str, list[Slot[_Payload]]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._enriched = 0
        self._trimmed: Counter[str] = Counter()
        self._latencies: list[float] = []
        # Deliveries the broker refused for good; the stage stops on the first one.
        self.refused: list[str] = []
        self._now_iso = ""
        self._now = 0.0
        self.fatal: FatalError | None = None

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        loaded = self._memory.load()
        if loaded:
            log.info("cache: %d remembered lookups loaded from the shared cache", loaded)
        self._lookups.start()

    def stop(self) -> None:
        self._lookups.stop()
        self._memory.close()

    def poll_timeout(self) -> float:
        if self._lookups.has_completed:
            return 0.0
        return 0.01 if self._waiting else 0.1

    def pump(self) -> None:
        self.on_lookups(self._lookups.take_completed())
        self._memory.refresh()

    def assigned(self, tps: list[TopicPartition]) -> None:
        """Nothing to prepare: the lookup cache is not per partition."""

    # --- intake -----------------------------------------------------------------

    def handle(self, records: Sequence[SourceRecord]) -> None:
        """Take a batch of consumed records (in consumption order)."""
        if not records:
            return
        self._tick()
        to_submit: list[str] = []
        hits = coalesced = 0
        ledger_of = self._ledger.partition
        decode = self._codec.decode
        remembered = self._memory.get
        now = self._clock.monotonic()
        # A batch holds long runs of one partition: its ledger is looked up once a run.
        topic, partition = records[0].topic(), records[0].partition()
        tp = (topic or "", partition or 0)
        track = ledger_of(tp).track
        for record in records:
            if record.partition() != partition or record.topic() != topic:
                topic, partition = record.topic(), record.partition()
                tp = (topic or "", partition or 0)
                track = ledger_of(tp).track
            slot = track(record.offset() or 0)
            if record.value() is None:
                self._skip(slot, SkipReason.TOMBSTONE)
                continue
            try:
                decision = classify(decode(record))
            except RecordError as error:
                self._dead_letter(slot, record, error.with_record(record))
                continue
            if not isinstance(decision, LookupRequest):
                self._skip(slot, decision)
                continue
            key = output_key(record.key(), decision)
            cached = remembered(decision.email, now)
            ordered_key = (tp, key)
            if cached is not None:
                hits += 1
                if self._transactional or not self._sequencer.busy(ordered_key):
                    self._resolve(slot, record, decision, key, cached)
                    continue
            coalesced += self._wait(slot, record, decision, key, ordered_key, cached, to_submit)
        self._sensor.consumed(len(records))
        self._sensor.cache(hits, len(to_submit), coalesced)
        if to_submit:
            self._lookups.submit(to_submit)

    def _wait(self, slot: Slot[_Payload], record: SourceRecord, decision: LookupRequest,
              key: bytes | None, ordered_key: tuple[TopicPartition, bytes | None],
              cached: Remembered | None, to_submit: list[str]) -> bool:
        """A record that cannot go out at once: behind an earlier one of its key, or its
        email's lookup (new, then in ``to_submit``, or in flight). True when coalesced."""
        ticket = None if self._transactional else self._sequencer.enter(ordered_key, slot)
        waiting = _Waiting(record, decision, key, ticket)
        slot.payload = waiting
        if cached is not None:
            self._settle(slot, waiting, cached)
            return False
        waiters = self._waiting.get(decision.email)
        if waiters is None:
            self._waiting[decision.email] = [slot]
            to_submit.append(decision.email)
            return False
        waiters.append(slot)
        return True

    def on_lookups(self, completed: list[tuple[str, LookupResult]]) -> None:
        """Take finished lookups from the pool: cache them, release their records."""
        if not completed:
            return
        self._tick()
        for email, result in completed:
            value = self._memory.remember(email, result)
            for slot in self._waiting.pop(email, ()):
                waiting = slot.payload
                if isinstance(waiting, _Waiting) and not waiting.abandoned:
                    self._settle(slot, waiting, value)

    @property
    def lookups_pending(self) -> int:
        """Distinct emails with a lookup in flight."""
        return len(self._waiting)

    # --- results ----------------------------------------------------------------

    def _settle(
        self, slot: Slot[_Payload], waiting: _Waiting, result: Remembered | RecordError | FatalError
    ) -> None:
        """A waiting record's result is known; emit it and whatever it held back."""
        waiting.result = result
        if waiting.ticket is None:
            self._resolve(slot, waiting.record, waiting.request, waiting.key, result)
            return
        for released in self._sequencer.ready(waiting.ticket):
            w = released.payload
            if isinstance(w, _Waiting) and w.result is not None:
                self._resolve(released, w.record, w.request, w.key, w.result)

    def _resolve(
        self,
        slot: Slot[_Payload],
        record: SourceRecord,
        request: LookupRequest,
        key: bytes | None,
        result: Remembered | RecordError | FatalError,
    ) -> None:
        if isinstance(result, Enriched):
            # The record's coordinates are the seed only when it has no messageId.
            message_id = output_message_id(
                request.message_id, "" if request.message_id else coordinates(record))
            event = enriched_event(request, result.traits, message_id, self._now_iso)
            value = self._codec.encode(event, self._topics.output)
            too_large = self._limits.refusal(self._topics.output, key, value, None, record)
            if too_large is not None:
                self._dead_letter(slot, record, too_large)
                return
            self._enriched += 1
            self._emit(slot, record, self._topics.output, key, value, None)
        elif isinstance(result, NotFound):
            self._skip(slot, SkipReason.NOT_FOUND)
        elif isinstance(result, Rejected):
            error = ProviderRejectedError(f"provider answered 422: {result.message}", record)
            self._dead_letter(slot, record, error)
        elif isinstance(result, RecordError):
            self._dead_letter(slot, record, result.with_record(record))
        else:
            # Fatal (the key was refused): leave the slot undone so nothing past it commits.
            self.fatal = self.fatal or result

    def _skip(self, slot: Slot[_Payload], reason: SkipReason) -> None:
        self._counts[(Outcome.SKIPPED, reason)] += 1
        slot.payload = None
        slot.done = True

    def _dead_letter(self, slot: Slot[_Payload], record: SourceRecord, error: RecordError) -> None:
        topic = self._topics.dead_letter
        letter = ENRICHMENT.letter(record, error, int(self._now * 1000), self._limits.limit(topic))
        self._counts[(Outcome.DEAD_LETTERED, error.reason)] += 1
        if letter.omitted:
            self._trimmed[error.reason] += 1
        self._emit(slot, record, topic, letter.key, letter.value, letter.headers)

    def _emit(self, slot: Slot[_Payload], record: SourceRecord, topic: str, key: bytes | None,
              value: bytes | None, headers: Headers | None) -> None:
        if self._transactional:
            slot.payload = Output(topic, key, value, headers)
            slot.done = True
            return
        slot.payload = None
        # One delivery report per output, rather than a blocking flush at checkpoints,
        # keeps the stage and the broker working at once (docs/benchmarks.md).
        self._sink.produce(topic, key, value, headers, _Delivery(slot, self.refused))
        input_ms = record.timestamp()[1]
        if input_ms > 0:
            self._latencies.append(self._now - input_ms / 1000)

    def _tick(self) -> None:
        self._now = self._clock.time()
        self._now_iso = iso_timestamp(self._now)

    # --- commits ----------------------------------------------------------------

    def take_decided(self) -> tuple[list[Output], dict[TopicPartition, int]]:
        """Transactional: the leading decided records' outputs, and the positions they reach."""
        taken, positions = self._ledger.take_done()
        return [s.payload for s in taken if isinstance(s.payload, Output)], positions

    def drop(self, tps: list[TopicPartition], *, committed: bool = False) -> None:
        """Forget partitions (revoked, lost, or rewound after an aborted transaction)."""
        for tp in tps:
            ledger: PartitionLedger[_Payload] | None = self._ledger.drop(tp)
            for slot in ledger or ():
                if isinstance(slot.payload, _Waiting):
                    slot.payload.abandoned = True
        self._sequencer.drop(lambda key: key[0] in tps)

    # --- reporting ----------------------------------------------------------------

    def report(self) -> None:
        """Flush the counts gathered since the last call to the sensor."""
        if self._enriched:
            # Counted apart: an int is cheaper per record than a Counter's tuple key.
            self._counts[(Outcome.ENRICHED, "")] += self._enriched
            self._enriched = 0
        if self._counts:
            self._sensor.outcomes(dict(self._counts))
            self._counts.clear()
        if self._trimmed:
            self._sensor.dead_letters_trimmed(dict(self._trimmed))
            self._trimmed.clear()
        if self._latencies:
            self._sensor.end_to_end(self._latencies)
            self._latencies = []


class _Delivery:
    """The delivery report of one output: its slot is done once the broker has it."""

    __slots__ = ("refused", "slot")

    def __init__(self, slot: Slot[_Payload], refused: list[str]) -> None:
        self.slot = slot
        self.refused = refused

    def __call__(self, error: Any, message: Any) -> None:
        if error is None:
            self.slot.done = True
        else:
            self.refused.append(f"{message.topic() if message else '?'}: {error}")
