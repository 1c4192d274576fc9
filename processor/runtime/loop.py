"""A stage's main loop and lifecycle: poll, hand over, commit, hold back, stop.

Both stages run on it; what each does to its records is its ``Pipeline``
(``processor.runtime.ports``). One thread owns the consumer and the producer.
Each turn of the loop it:

1. polls a batch (briefly when the pipeline has work in the background, so
   finished work is picked up soon) and hands it to the pipeline;
2. lets the pipeline take what finished in the background (lookups, for one);
3. serves delivery reports, then stores (at-least-once) or, at the commit
   interval, commits in a transaction (exactly-once) what is safe;
4. holds back while too many records are unfinished: it takes no records and
   waits on the delivery reports instead, until half of them are done. The
   records stay in librdkafka's prefetch meanwhile (a pause would drop it, and
   fetching only starts again a while after the resume). A hold that lasts
   ``HOLD_BEFORE_PAUSE`` pauses the consumer and polls it, so that the group's
   events are served however long the broker takes.

SIGTERM/SIGINT start a graceful stop: fetching stops, in-flight work gets
``shutdown_timeout`` seconds to finish, what is complete is committed, exit 0.
A second signal stops at once. A fatal error (the provider refused the key, a
delivery that cannot be confirmed) stops without committing anything past it;
so does any exception nobody foresaw, raised again as an ``UnexpectedError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from processor.core.clock import Clock
from processor.core.errors import DeliveryError, FatalError, UnexpectedError
from processor.core.offsets import TopicPartition
from processor.runtime.ports import Pipeline, Sensor, Source, TransactionalSink
from processor.runtime.signals import StopRequest

log = logging.getLogger(__name__)

# Seconds a stage holds back without polling its consumer: far below librdkafka's
# max.poll.interval.ms, and long enough that a short wait on deliveries costs no pause.
HOLD_BEFORE_PAUSE = 1.0


class Lifecycle(Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class StageOptions:
    input_topics: tuple[str, ...]
    max_batch: int = 500
    max_buffered: int = 10_000
    commit_interval: float = 1.0
    shutdown_timeout: float = 20.0
    transactional: bool = False


class Stage:
    def __init__(
        self,
        *,
        options: StageOptions,
        source: Source,
        sink: TransactionalSink,
        pipeline: Pipeline,
        sensor: Sensor,
        clock: Clock,
        on_assignment: Callable[[list[TopicPartition]], None] = lambda _tps: None,
        stop: StopRequest | None = None,
    ) -> None:
        self._options = options
        self._source = source
        self._sink = sink
        self._pipeline = pipeline
        self._sensor = sensor
        self._clock = clock
        self._on_assignment = on_assignment
        self._stop_request = stop or StopRequest()
        self._stop = self._stop_request.event
        self._last_commit = clock.monotonic()
        # When the buffer filled up (the stage takes no records until half of it is done).
        self._held_since: float | None = None
        self.state = Lifecycle.STARTING

    # --- control -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful stop (safe from signal handlers and other threads)."""
        self._stop_request.request()

    # --- the loop ------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped; raises ``FatalError`` when the stage cannot go on (an
        ``UnexpectedError`` for any other exception)."""
        self._pipeline.start()
        self._source.subscribe(self._options.input_topics, self._assigned, self._revoked,
                               self._lost)
        self.state = Lifecycle.RUNNING
        self._sensor.state(alive=True, ready=False)
        try:
            while not self._stop.is_set():
                self._turn()
            self.state = Lifecycle.STOPPING
            self._drain(self._options.shutdown_timeout)
        except FatalError:
            self.state = Lifecycle.FAILED
            self._fail_safe()
            raise
        except Exception as error:
            # Whatever it was, one record or one answer must not turn it into a crash
            # that skips the safe stop: the same stop as a fatal error.
            self.state = Lifecycle.FAILED
            self._fail_safe()
            raise UnexpectedError.of(error, "the stage loop") from error
        finally:
            self._close()

    def _turn(self) -> None:
        pipeline = self._pipeline
        timeout = pipeline.poll_timeout()
        if self._held_since is not None:
            # Held back, the turn waits only briefly: going on depends on the delivery
            # reports (and background work), not on records.
            timeout = min(timeout, 0.01)
        if self._held_since is not None and not self._source.paused:
            self._sink.poll(timeout)  # the consumer keeps its prefetch meanwhile
        else:
            pipeline.handle(self._source.poll(self._options.max_batch, timeout))
        pipeline.pump()
        self._settle()
        self._hold_back()

    def _settle(self) -> None:
        """Serve delivery reports, then store (at-least-once) or, at the commit interval,
        commit a transaction (exactly-once); raise if something failed."""
        self._sink.poll(0)
        self._raise_failures()
        pipeline = self._pipeline
        if self._options.transactional:
            due = self._clock.monotonic() - self._last_commit >= self._options.commit_interval
            # Early too when decided records would otherwise fill the buffer and pause
            # fetching until the next interval.
            if due or pipeline.outstanding() >= self._options.max_buffered // 2:
                self._commit_transaction()
        else:
            # At-least-once: positions whose outputs the broker confirmed are stored for
            # the consumer's background commit.
            self._source.store(pipeline.advance())
        pipeline.report()

    def _raise_failures(self) -> None:
        refused = self._sink.refused + self._pipeline.refused
        if refused:
            for _ in refused:
                self._sensor.produce_error()
            raise DeliveryError(f"the broker did not take {len(refused)} record(s): "
                                f"{refused[0]}")
        if self._pipeline.fatal is not None:
            raise self._pipeline.fatal

    def _hold_back(self) -> None:
        outstanding = self._pipeline.outstanding()
        limit = self._options.max_buffered
        source = self._source
        if self._held_since is None:
            if outstanding >= limit:
                self._held_since = self._clock.monotonic()
                log.debug("holding back: %d records unfinished", outstanding)
        elif outstanding <= limit // 2 and not self._stop.is_set():
            self._held_since = None
            if source.paused:
                source.resume()
        elif (not source.paused
              and self._clock.monotonic() - self._held_since >= HOLD_BEFORE_PAUSE):
            source.pause()
            log.debug("paused fetching: %d records unfinished", outstanding)
        self._sensor.buffered(outstanding, self._held_since is not None)

    # --- commits ---------------------------------------------------------------------

    def _commit_transaction(self) -> None:
        outputs, positions = self._pipeline.take_decided()
        self._last_commit = self._clock.monotonic()
        if not outputs and not positions:
            return
        self._sink.begin()
        for output in outputs:
            self._sink.produce(output.topic, output.key, output.value, output.headers, None,
                               output.partition)
        try:
            self._sink.commit_transaction(positions, self._source.group_metadata(), 30.0)
        except DeliveryError as error:
            log.warning("%s; rewinding to the last committed offsets", error)
            self._sensor.committed(ok=False, wall_time=self._clock.time())
            self._rewind()
            return
        self._sensor.committed(ok=True, wall_time=self._clock.time())

    def _rewind(self) -> None:
        """After an aborted transaction: forget all progress, re-read from the last commit."""
        tps = self._source.assignment()
        self._pipeline.drop(tps)
        committed = self._source.committed(tps)
        self._source.seek(committed)

    def _commit_now(self, tps: list[TopicPartition] | None = None) -> None:
        """Synchronously commit the safe positions (of ``tps``, or of all partitions)."""
        if self._options.transactional:
            self._commit_transaction()
            return
        self._sink.flush(10.0)
        self._raise_failures()
        self._pipeline.advance()
        positions = self._pipeline.positions()
        if tps is not None:
            positions = {tp: o for tp, o in positions.items() if tp in tps}
        # Stored first: librdkafka's own auto-commit (on close, for one) commits the
        # stored offsets, and stale ones would move the group back behind this commit.
        self._source.store(positions)
        ok = self._source.commit(positions)
        self._sensor.committed(ok=ok, wall_time=self._clock.time())

    # --- rebalances ------------------------------------------------------------------

    def _assigned(self, tps: list[TopicPartition]) -> None:
        log.info("assigned %s", _names(tps))
        self._pipeline.assigned(tps)
        self._on_assignment(self._source.assignment())
        self._sensor.state(alive=True, ready=True)

    def _revoked(self, tps: list[TopicPartition]) -> None:
        # While stopping, the drain has already spent the shutdown budget: closing the
        # consumer revokes everything again, and waiting a second time would both break
        # the promised shutdown time and outlive the group session (librdkafka stops
        # heartbeating while it closes), so the commit below would be refused.
        stopping = self.state is not Lifecycle.RUNNING
        log.info("revoked %s%s", _names(tps),
                 "" if stopping else ": finishing their in-flight records")
        self._finish_partitions(tps, 0.0 if stopping else self._options.shutdown_timeout)
        self._commit_now(tps)
        self._pipeline.drop(tps, committed=True)
        remaining = [tp for tp in self._source.assignment() if tp not in tps]
        self._on_assignment(remaining)

    def _lost(self, tps: list[TopicPartition]) -> None:
        # Someone else owns them already: committing now could move their offsets back.
        log.warning("lost %s: dropping their in-flight records", _names(tps))
        self._pipeline.drop(tps)
        self._on_assignment([tp for tp in self._source.assignment() if tp not in tps])

    def _finish_partitions(self, tps: list[TopicPartition] | None, timeout: float) -> None:
        """Keep background work and deliveries moving until ``tps`` have nothing unfinished."""
        deadline = self._clock.monotonic() + timeout
        pipeline = self._pipeline
        while (pipeline.unfinished(tps) and self._clock.monotonic() < deadline
               and not self._stop_request.urgent):
            pipeline.pump()
            self._sink.poll(0.01)
            self._raise_failures()
        self._pipeline.report()

    # --- stopping --------------------------------------------------------------------

    def _drain(self, timeout: float) -> None:
        """Finish, flush and commit within ``timeout`` in all: a quarter of it (at most
        5 s) is kept for confirming deliveries and committing."""
        log.info("stopping: fetching paused, waiting up to %.0fs for in-flight records", timeout)
        reserve = min(5.0, timeout / 4)
        deadline = self._clock.monotonic() + timeout
        self._source.pause()
        self._finish_partitions(None, max(0.0, timeout - reserve))
        self._sink.flush(max(0.5, deadline - self._clock.monotonic() - 1.0))
        self._commit_now()
        left = self._pipeline.outstanding()
        if left:
            log.warning("%d records were unfinished at shutdown; they will be processed again",
                        left)

    def _fail_safe(self) -> None:
        """After a fatal error: deliver what was produced, commit only what is confirmed."""
        try:
            self._sink.flush(10.0)
            if self._options.transactional:
                self._sink.abort(10.0)
            else:
                self._commit_now()
        except Exception:
            log.warning("could not commit after the failure", exc_info=True)

    def _close(self) -> None:
        self._pipeline.stop()
        for name, client in (("consumer", self._source), ("producer", self._sink)):
            try:
                client.close()
            except Exception:  # closing a client that already failed: log, go on
                log.warning("%s did not close cleanly", name, exc_info=True)
        self._sensor.state(alive=False, ready=False)
        if self.state is not Lifecycle.FAILED:
            self.state = Lifecycle.STOPPED


def _names(tps: list[TopicPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "nothing"

