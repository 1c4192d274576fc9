"""What the sender does to each conversions-topic record, on the shared runtime.

A record is one audience entry with its destinations (``schemas/conversion.schema.json``).
For each destination it is either answered at once (skipped: too old for Meta, nothing
to match on), put on the delay topic (Google: its click is younger than the minimum
age), or batched per account and sent by the delivery pool. Every result becomes an
audit record (``schemas/conversion-sent.schema.json``), and a rejection also a dead
letter: the record unchanged, with the platform's code as the reason.

A record's slot is done when every destination has its result and the broker has
confirmed every record written for it (audit, dead letter, delay): only then may its
offset be committed. Transactional, they go in the checkpoint's transaction instead.

The delay topic holds the Google part of conversions whose click is too recent, with a
``conversions.not_before`` header. Its partitions are read in order: a record not yet
due waits with everything behind it, and its partition is held (not fetched) meanwhile,
so the wait costs no memory and its committed offset stays at the first conversion not
yet sent. Behind a waiting record, none waits longer than the minimum click age.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from processor.core.clock import Clock
from processor.core.conversions.audit import Status
from processor.core.conversions.record import Conversion, UnreadableRecord, read_record
from processor.core.conversions.sending import (
    Destination,
    account_of,
    destinations_of,
    google_not_before_ms,
    identifiable,
    match_keys,
    meta_too_old,
    payload_of,
)
from processor.core.errors import DestinationRefusedError, FatalError, UnreadableConversionError
from processor.core.offsets import Slot, TopicPartition
from processor.core.records import SourceRecord
from processor.runtime.ledgered import Ledgered
from processor.runtime.ports import Output, Sink
from processor.runtime.size_limits import TopicLimits
from processor.stages.sender.batches import Batcher, Item
from processor.stages.sender.outputs import DELAYS, NOT_BEFORE, ResultWriter, header_number
from processor.stages.sender.pool import DeliveryPool, Result
from processor.stages.sender.ports import PartitionGate, SenderSensor
from processor.stages.sender.waiting import WaitingLine

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SenderTopics:
    outbox: str
    delayed: str
    sent: str
    dead_letter: str


@dataclass(frozen=True)
class SenderOptions:
    destinations: frozenset[Destination]  # those with credentials
    missing: dict[Destination, str] = field(default_factory=dict)  # what each lacks
    meta_max_age: float = 6 * 86_400 + 23 * 3600
    google_min_age: float = 6 * 3600
    too_recent_delay: float = 3600.0
    max_delays: int = 24
    dry_run: bool = False
    transactional: bool = False


class _Delivery:
    """A record's results not yet decided or confirmed; its slot is done when none are."""

    __slots__ = ("dropped", "outputs", "parked", "pending", "record", "refused", "slot",
                 "unconfirmed")

    def __init__(self, slot: Slot[_Delivery], record: SourceRecord, refused: list[str]) -> None:
        self.slot = slot
        self.record = record
        self.refused = refused
        self.pending = 0  # destinations still waiting for the platform's answer
        self.unconfirmed = 0  # records written and not yet confirmed by the broker
        self.outputs: list[Output] = []  # transactional: for the checkpoint
        self.parked = False
        self.dropped = False

    def __call__(self, error: Any, message: Any) -> None:
        if error is not None:
            self.refused.append(f"{message.topic() if message else '?'}: {error}")
            return
        self.unconfirmed -= 1
        self.settle()

    def settle(self) -> None:
        if self.pending == 0 and self.unconfirmed == 0 and not self.parked:
            self.slot.done = True


class SenderPipeline(Ledgered[_Delivery]):
    """Implements ``processor.runtime.ports.Pipeline`` for the sender."""

    def __init__(self, *, topics: SenderTopics, options: SenderOptions, pool: DeliveryPool,
                 batcher: Batcher, sink: Sink, gate: PartitionGate, sensor: SenderSensor,
                 clock: Clock, limits: TopicLimits | None = None) -> None:
        super().__init__()
        self._topics = topics
        self._options = options
        self._pool = pool
        self._batcher = batcher
        self._sink = sink
        self._sensor = sensor
        self._clock = clock
        self._writer = ResultWriter(sent=topics.sent, delayed=topics.delayed,
                                    dead_letter=topics.dead_letter, test=options.dry_run,
                                    limits=limits)
        self._waiting = WaitingLine[_Delivery](
            gate, lambda d: header_number(d.record, NOT_BEFORE))
        self._in_pool: Counter[Destination] = Counter()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._sent: Counter[tuple[str, str, str]] = Counter()
        self._reasons: Counter[tuple[str, str, str]] = Counter()
        self._keys: Counter[tuple[str, str]] = Counter()
        self._delayed: Counter[tuple[str, str]] = Counter()
        self.refused: list[str] = []
        self.fatal: FatalError | None = None

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self._pool.start()
        log.info("sending to %s%s", ", ".join(sorted(self._options.destinations)) or "nothing",
                 " (dry run: test events only)" if self._options.dry_run else "")

    def stop(self) -> None:
        self._pool.stop()

    def poll_timeout(self) -> float:
        if self._pool.has_completed:
            return 0.0
        return 0.02 if self._batcher or sum(self._in_pool.values()) else 0.25

    def assigned(self, tps: list[TopicPartition]) -> None:
        """Nothing to prepare: a partition's records are tracked as they come."""

    # --- intake -----------------------------------------------------------------

    def handle(self, records: Sequence[SourceRecord]) -> None:
        if not records:
            return
        now_ms = int(self._clock.time() * 1000)
        for record in records:
            tp = (record.topic() or "", record.partition() or 0)
            slot = self._ledger.partition(tp).track(record.offset() or 0)
            delivery = _Delivery(slot, record, self.refused)
            slot.payload = delivery
            if self._waiting.waits(tp) or (tp[0] == self._topics.delayed
                                           and header_number(record, NOT_BEFORE) > now_ms):
                delivery.parked = True
                self._waiting.add(tp, delivery)
            else:
                self._begin(delivery, now_ms)
        self._sensor.consumed(len(records))

    def _begin(self, delivery: _Delivery, now_ms: int) -> None:
        record = delivery.record
        if record.value() is None:
            self._counts[("skipped", "tombstone")] += 1
            delivery.settle()
            return
        try:
            conversion = read_record(orjson.loads(record.value() or b""))
        except (orjson.JSONDecodeError, UnreadableRecord) as error:
            problem = UnreadableConversionError(f"not a conversion: {error}", record)
            self._counts[("dead_lettered", problem.reason)] += 1
            self._emit(delivery, [self._writer.dead_letter(record, problem, now_ms)])
            return
        delayed = record.topic() == self._topics.delayed
        destinations = destinations_of(conversion)
        if delayed:  # only Google's part waits there; Meta's was sent from the outbox
            destinations = tuple(d for d in destinations if d is Destination.GOOGLE)
        missing = [d for d in destinations if d not in self._options.destinations]
        if missing:
            self._refuse_missing(conversion, missing[0])
            return  # the slot stays open: nothing from here on is committed
        outputs: list[Output] = []
        for destination in destinations:
            answer = self._not_now(delivery, conversion, destination, now_ms)
            if answer is not None:
                outputs.append(answer)
                continue
            account = account_of(conversion, destination)
            payload = payload_of(conversion, destination, account.api, now_ms / 1000)
            item = Item(conversion, account, payload, match_keys(conversion, destination),
                        delivery)
            delivery.pending += 1
            self._in_pool[destination] += 1
            full = self._batcher.add(item)
            if full is not None:
                self._pool.submit(full)
        self._counts[("processed", "")] += 1
        self._emit(delivery, outputs)

    def _not_now(self, delivery: _Delivery, conversion: Conversion, destination: Destination,
                 now_ms: int) -> Output | None:
        """The audit or delay record of a conversion not to be sent now, else None."""
        if destination is Destination.META and meta_too_old(
                conversion, now_ms / 1000, self._options.meta_max_age):
            return self._result(delivery, conversion, destination, Status.SKIPPED,
                                "meta_too_old", now_ms=now_ms)[0]
        if not identifiable(conversion, destination):
            return self._result(delivery, conversion, destination, Status.SKIPPED,
                                "no_identifiers", now_ms=now_ms)[0]
        if destination is Destination.GOOGLE and delivery.record.topic() == self._topics.outbox:
            not_before = google_not_before_ms(conversion,
                                              int(self._options.google_min_age * 1000))
            if not_before > now_ms:
                self._delayed[(destination.value, "click_too_recent")] += 1
                return self._writer.delay(delivery.record, not_before, 1, now_ms)
        return None

    def _refuse_missing(self, conversion: Conversion, destination: Destination) -> None:
        if self.fatal is None:
            lacking = self._options.missing.get(destination, "its credentials")
            self.fatal = DestinationRefusedError(
                f"audience {conversion.audience!r} sends to {destination}, but {lacking} "
                "is not set: set it, or take the destination out of the audience")
            self._sensor.stopped(destination.value)

    # --- results ----------------------------------------------------------------------

    def pump(self) -> None:
        if self._pool.refusal is not None and self.fatal is None:
            destination, error = self._pool.refusal
            self.fatal = error
            self._sensor.stopped(destination.value)
        for batch in self._batcher.due():
            self._pool.submit(batch)
        now_ms = int(self._clock.time() * 1000)
        for result in self._pool.take_completed():
            self._resolve(result, now_ms)
        for delivery in self._waiting.due(now_ms) if self._waiting else ():
            delivery.parked = False
            self._begin(delivery, now_ms)

    def _resolve(self, result: Result, now_ms: int) -> None:
        item = result.item
        delivery: _Delivery = item.ticket
        self._in_pool[item.destination] -= 1
        if delivery.dropped:
            return  # revoked or rewound meanwhile: the next owner sends it again
        status = result.status
        if status is None:
            delays = header_number(delivery.record, DELAYS) + 1
            if delays <= self._options.max_delays:
                self._delayed[(item.destination.value, "too_recent")] += 1
                delay_ms = int(self._options.too_recent_delay * 1000)
                outputs = [self._writer.delay(delivery.record, now_ms + delay_ms, delays,
                                              now_ms)]
                delivery.pending -= 1
                self._emit(delivery, outputs)
                return
            status = Status.REJECTED  # still "too recent" after a day of trying
        outputs = self._result(delivery, item.conversion, item.destination, status,
                               result.reason, result.ref, result.code, item.keys, now_ms)
        delivery.pending -= 1
        self._emit(delivery, outputs)

    def _result(self, delivery: _Delivery, conversion: Conversion, destination: Destination,
                status: Status, reason: str, ref: str = "", code: str = "",
                keys: tuple[str, ...] | None = None, now_ms: int = 0) -> list[Output]:
        """The audit record of one result (and for a rejection, the dead letter)."""
        record = delivery.record
        keys = match_keys(conversion, destination) if keys is None else keys
        outputs = [self._writer.audit(record, conversion, destination, status, reason, ref,
                                      keys, now_ms)]
        self._sent[(destination.value, conversion.audience, status.value)] += 1
        if reason:
            self._reasons[(destination.value, status.value, reason)] += 1
        if status in (Status.ACCEPTED, Status.DUPLICATE):
            self._keys.update((destination.value, key) for key in keys)
        if status is Status.REJECTED:
            outputs.append(self._writer.rejection(record, conversion, destination, reason,
                                                  code, now_ms))
        return outputs

    def _emit(self, delivery: _Delivery, outputs: list[Output]) -> None:
        if self._options.transactional:
            delivery.outputs += outputs
        else:
            delivery.unconfirmed += len(outputs)
            for output in outputs:
                self._sink.produce(output.topic, output.key, output.value, output.headers,
                                   delivery, partition=output.partition)
        delivery.settle()

    # --- the ledger -------------------------------------------------------------------

    def take_decided(self) -> tuple[list[Output], dict[TopicPartition, int]]:
        outputs: list[Output] = []
        positions: dict[TopicPartition, int] = {}
        for tp, ledger in self._ledger.items():
            taken = ledger.take_leading(_is_done)
            for slot in taken:
                if slot.payload is not None:
                    outputs += slot.payload.outputs
            if taken:
                positions[tp] = taken[-1].offset + 1
        return outputs, positions

    def unfinished(self, tps: list[TopicPartition] | None = None) -> int:
        """Records with work under way; a waiting (parked) one has none, and is read again
        by whoever owns its partition next."""
        return sum(1 for tp, ledger in self._ledger.items() if tps is None or tp in tps
                   for slot in ledger if not slot.done and not (
                       slot.payload is not None and slot.payload.parked))

    def drop(self, tps: list[TopicPartition], *, committed: bool = False) -> None:
        """Forget them (revoked, lost, rewound): results still to come for their records
        are ignored, and the next owner sends those again. No state outlives a drop."""
        for tp in tps:
            dropped = self._ledger.drop(tp)
            for slot in dropped or ():
                if slot.payload is not None:
                    slot.payload.dropped = True
        self._waiting.drop(tps)

    # --- reporting ----------------------------------------------------------------------

    def report(self) -> None:
        sensor = self._sensor
        if self._counts:
            sensor.outcomes(dict(self._counts))
            self._counts.clear()
        for counter, hook in ((self._sent, sensor.sent), (self._reasons, sensor.reasons)):
            if counter:
                hook(dict(counter))
                counter.clear()
        if self._keys:
            sensor.match_keys(dict(self._keys))
            self._keys.clear()
        if self._delayed:
            sensor.delayed(dict(self._delayed))
            self._delayed.clear()
        # _in_pool counts from batching to answer; parked ones wait on the delay topic.
        waiting = {Destination.GOOGLE: len(self._waiting)}  # only Google's part waits
        sensor.pending({d.value: self._in_pool[d] + waiting.get(d, 0)
                        for d in self._options.destinations})


def _is_done(slot: Slot[_Delivery]) -> bool:
    return slot.done
