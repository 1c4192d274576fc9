"""The delivery pool: batches sent by a bounded set of workers on one asyncio loop in its
own thread, one lane per destination.

The stage's thread owns Kafka; it submits full or lingered batches and takes results
back with ``take_completed`` (both thread-safe, neither blocks). Each destination has its
own lane, so one platform's trouble never holds up the other: ``max_in_flight`` workers,
a queue (split and retried batches first), a client-side rate limiter, a circuit breaker
and a throttle. What each answer does (``processor.core.conversions.verdicts``):

* accepted, duplicate: a result per conversion;
* rejected whole (Meta and Data Manager refuse a request for one bad event): the batch
  is split in two and each half sent again, until the bad events are alone; those are
  rejected with the platform's code, the rest go through. One bad event in 64 costs
  1 + 2 x log2(64) = 13 requests at most;
* Google Ads rows: each row on its own; transient rows are sent again, alone;
* throttled: the lane holds (``Retry-After``, else a growing backoff), then probes with
  one request at a time until an answer is not a throttle. Nothing is dead-lettered
  for it, however long it lasts;
* transient (5xx, timeouts): the batch is retried with backoff and jitter until
  ``retry_deadline``, then rejected as ``retries_exhausted``;
* too recent (Google: click under 6 hours): handed back to be sent again later;
* refused (credentials, permissions): the lane stops and ``refusal`` is set; the
  batch's conversions get no result, so nothing from them on is committed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from processor.core.backoff import Backoff
from processor.core.circuit import CircuitBreaker
from processor.core.clock import Clock
from processor.core.conversions.audit import Status
from processor.core.conversions.sending import Destination, meta_too_old
from processor.core.conversions.verdicts import Kind, Verdict
from processor.core.errors import DestinationRefusedError, UnexpectedError
from processor.core.ratelimit import RateLimiter
from processor.core.redact import redact
from processor.runtime.loop_thread import stop_loop_thread
from processor.stages.sender.batches import Batch, Item
from processor.stages.sender.ports import PlatformClient, SenderSensor

log = logging.getLogger(__name__)

RETRIED, FRESH = 0, 1  # queue priorities: split and retried batches go first
PROBE_WAIT = 0.2  # while throttled, how often a worker checks whether the probe is back


@dataclass(frozen=True)
class DeliveryPolicy:
    max_in_flight: int = 8
    rate_limits: Mapping[Destination, float] = field(default_factory=dict)  # per minute
    retry_deadline: float = 300.0
    backoff: Backoff = field(default_factory=Backoff)
    # Throttling: holds of 1 s doubling to 30 s between single probes, until one gets
    # through (a limit that resets within the minute costs at most half a minute more).
    throttle_backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))
    breaker_threshold: int = 5
    breaker_reset: float = 10.0
    meta_max_age: float = 6 * 86_400 + 23 * 3600
    test: bool = False  # dry run: Meta's test_event_code, Google's validateOnly


class Result(NamedTuple):
    item: Item
    status: Status | None  # None: Google says the click is too recent; send it later
    reason: str = ""  # the platform's code, retries_exhausted, or a skip's reason
    ref: str = ""
    code: str = ""  # the platform's last code, when the reason is not it


class _Lane:
    def __init__(self, client: PlatformClient, policy: DeliveryPolicy, clock: Clock) -> None:
        self.client = client
        self.destination = client.destination
        self.queue: asyncio.PriorityQueue[tuple[int, int, Batch]] = asyncio.PriorityQueue()
        self.limiter = RateLimiter(policy.rate_limits.get(self.destination, 0.0), clock)
        self.breaker = CircuitBreaker(policy.breaker_threshold, policy.breaker_reset, clock)
        self.throttled = 0  # throttle answers in a row
        self.probing = False
        self.stopped = False


class DeliveryPool:
    def __init__(self, clients: Callable[[], Iterable[PlatformClient]], policy: DeliveryPolicy,
                 clock: Clock, sensor: SenderSensor,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
                 ) -> None:
        self._clients = clients
        self._policy = policy
        self._clock = clock
        self._sensor = sensor
        self._completed: deque[Result] = deque()
        self._loop = loop_factory()
        self._thread = threading.Thread(target=self._run, name="delivery-pool", daemon=True)
        self._started = threading.Event()
        self._lanes: dict[Destination, _Lane] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._order = itertools.count()
        self.refusal: tuple[Destination, DestinationRefusedError] | None = None
        self._failed: UnexpectedError | None = None

    # --- the stage's side (any thread) ------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._failed is not None:
            raise self._failed

    def submit(self, batch: Batch) -> None:
        self._loop.call_soon_threadsafe(self._enqueue, batch, FRESH, 0.0)

    def take_completed(self) -> list[Result]:
        completed = self._completed
        taken = []
        while completed:
            taken.append(completed.popleft())
        return taken

    @property
    def has_completed(self) -> bool:
        return bool(self._completed)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what is in flight (those conversions stay uncommitted), close clients."""
        if self._failed is not None:  # it never ran: nothing to cancel or close
            self._thread.join(timeout)
            return
        stop_loop_thread(self._loop, self._thread, self._shutdown(), timeout, "delivery pool")

    # --- the loop's side ----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            clients = list(self._clients())
        except Exception as error:  # noqa: BLE001 - handed to start(), which raises it
            self._failed = UnexpectedError.of(error, "building the ad platforms' clients")
            self._loop.close()
            self._started.set()
            return
        for client in clients:
            lane = self._lanes[client.destination] = _Lane(client, self._policy, self._clock)
            self._workers += [self._loop.create_task(self._worker(lane),
                                                     name=f"send-{lane.destination}-{i}")
                              for i in range(self._policy.max_in_flight)]
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for lane in self._lanes.values():
            await lane.client.aclose()

    def _enqueue(self, batch: Batch, priority: int, delay: float) -> None:
        lane = self._lanes.get(batch.account.destination)
        if lane is None:  # the pipeline only submits to destinations it has clients for
            raise RuntimeError(f"no client for {batch.account.destination}")
        entry = (priority, next(self._order), batch)
        if delay > 0:
            self._loop.call_later(delay, lane.queue.put_nowait, entry)
        else:
            lane.queue.put_nowait(entry)

    def _finish(self, items: Iterable[Item], status: Status | None, reason: str = "",
                ref: str = "", code: str = "") -> None:
        self._completed.extend(Result(item, status, reason, ref, code or reason)
                               for item in items)

    async def _worker(self, lane: _Lane) -> None:
        while True:
            _, _, batch = await lane.queue.get()
            try:
                await self._attempt(lane, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker failed unexpectedly")
                self._refuse(lane, batch, Verdict(Kind.REFUSED, "error", "sender_bug"))

    async def _attempt(self, lane: _Lane, batch: Batch) -> None:
        if lane.stopped:
            return
        if lane.destination is Destination.META:
            self._drop_too_old(batch)
            if not batch.items:
                return
        wait, probe = self._gate(lane, batch)
        if wait is not None:
            if batch.failing_since is not None and self._out_of_time(batch, wait):
                self._give_up(batch, "circuit_open")
            else:
                self._enqueue(batch, RETRIED, wait)
            return
        await self._pace(lane)
        if lane.throttled and not probe:  # throttled while it waited for its slot
            self._enqueue(batch, RETRIED, 0.0)
            return
        started = self._clock.monotonic()
        verdict = await lane.client.send(batch.account, [i.payload for i in batch.items],
                                         self._policy.test)
        self._sensor.request(lane.destination.value, verdict.status,
                             self._clock.monotonic() - started, len(batch.items))
        if probe:
            lane.probing = False
        if verdict.kind is not Kind.THROTTLED:
            lane.throttled = 0
        self._answered(lane, batch, verdict)

    def _drop_too_old(self, batch: Batch) -> None:
        """Meta refuses the whole request for one event over 7 days old: an event that has
        aged past the limit while waiting (a long throttle) leaves the batch."""
        now = self._clock.time()
        old = [i for i in batch.items if meta_too_old(i.conversion, now,
                                                       self._policy.meta_max_age)]
        if old:
            batch.items = [i for i in batch.items if i not in old]
            self._finish(old, Status.SKIPPED, "meta_too_old")

    def _gate(self, lane: _Lane, batch: Batch) -> tuple[float | None, bool]:
        """(None when the batch may go now, else seconds until it should try again;
        whether it goes as the throttled lane's one probe)."""
        if lane.throttled:
            held = lane.limiter.hold_remaining()
            if held > 0:
                return held, False
            if lane.probing:
                return PROBE_WAIT, False
            lane.probing = True  # one request at a time until the throttle is over
            return None, True
        wait = lane.breaker.admit()
        if not wait:
            return None, False
        # An open circuit counts as failing: a long outage ends in dead letters.
        if batch.failing_since is None:
            batch.failing_since = self._clock.monotonic()
        return wait, False

    async def _pace(self, lane: _Lane) -> None:
        while True:
            wait = lane.limiter.reserve()
            if wait <= 0:
                return
            await asyncio.sleep(wait)
            if not lane.limiter.held():
                return

    def _answered(self, lane: _Lane, batch: Batch, verdict: Verdict) -> None:
        kind = verdict.kind
        if kind is Kind.THROTTLED:
            self._throttled(lane, batch, verdict)
            return
        if kind is Kind.TRANSIENT:
            lane.breaker.failure()
            self._sensor.circuit(lane.destination.value, lane.breaker.state)
            self._retry(batch, verdict.code)
            return
        if kind is Kind.REFUSED or kind is Kind.EXPIRED:
            self._refuse(lane, batch, verdict)
            return
        lane.breaker.success()
        self._sensor.circuit(lane.destination.value, lane.breaker.state)
        if kind is Kind.ACCEPTED:
            self._finish(batch.items, Status.ACCEPTED, ref=verdict.ref)
        elif kind is Kind.DUPLICATE:
            self._finish(batch.items, Status.DUPLICATE, verdict.code, verdict.ref)
        elif kind is Kind.ROWS:
            self._rows(lane, batch, verdict)
        elif len(batch.items) > 1:  # rejected or too recent, whole: find the culprits
            half = len(batch.items) // 2
            for part in (batch.items[:half], batch.items[half:]):
                self._enqueue(Batch(batch.account, part, batch.opened), RETRIED, 0.0)
        elif kind is Kind.TOO_RECENT:
            self._finish(batch.items, None, verdict.code, verdict.ref)
        else:
            self._finish(batch.items, Status.REJECTED, verdict.code, verdict.ref)

    def _rows(self, lane: _Lane, batch: Batch, verdict: Verdict) -> None:
        again: list[Item] = []
        code = ""
        for item, row in zip(batch.items, verdict.rows, strict=True):
            if row.kind is Kind.ACCEPTED:
                self._finish([item], Status.ACCEPTED, ref=row.ref)
            elif row.kind is Kind.DUPLICATE:
                self._finish([item], Status.DUPLICATE, row.code, row.ref)
            elif row.kind is Kind.TOO_RECENT:
                self._finish([item], None, row.code, row.ref)
            elif row.kind is Kind.REJECTED:
                self._finish([item], Status.REJECTED, row.code, row.ref)
            elif row.kind is Kind.REFUSED:
                self._refuse(lane, Batch(batch.account, [item]), row)
            else:  # transient (internal error, concurrent modification): this row again
                again.append(item)
                code = code or row.code
        if again:
            self._retry(Batch(batch.account, again, batch.opened, batch.attempts,
                              batch.failing_since), code)

    def _throttled(self, lane: _Lane, batch: Batch, verdict: Verdict) -> None:
        lane.breaker.release()
        lane.throttled += 1
        hold = verdict.retry_after
        if hold is None:
            hold = self._policy.throttle_backoff.delay(lane.throttled)
        lane.limiter.hold_until(self._clock.monotonic() + hold)
        self._sensor.retry(lane.destination.value, "throttled")
        if lane.throttled == 1:
            log.warning("%s is throttling (%s): holding its requests for %.1fs",
                        lane.destination, verdict.code, hold)
        self._enqueue(batch, RETRIED, 0.0)

    def _out_of_time(self, batch: Batch, delay: float) -> bool:
        started = batch.failing_since
        return started is not None and (
            self._clock.monotonic() + delay - started >= self._policy.retry_deadline)

    def _retry(self, batch: Batch, code: str) -> None:
        batch.attempts += 1
        if batch.failing_since is None:
            batch.failing_since = self._clock.monotonic()
        delay = self._policy.backoff.delay(batch.attempts)
        if self._out_of_time(batch, delay):
            self._give_up(batch, code)
            return
        self._sensor.retry(batch.account.destination.value, "transient")
        self._enqueue(batch, RETRIED, delay)

    def _give_up(self, batch: Batch, code: str) -> None:
        log.warning("%s: %d conversion(s) failed %d time(s) within %.0fs (last: %s); "
                    "dead-lettering them as retries_exhausted", batch.account.label(),
                    len(batch.items), batch.attempts, self._policy.retry_deadline, code)
        self._finish(batch.items, Status.REJECTED, "retries_exhausted", code=code)

    def _refuse(self, lane: _Lane, batch: Batch, verdict: Verdict) -> None:
        lane.stopped = True
        if self.refusal is not None:
            return
        audiences = ", ".join(sorted({i.conversion.audience for i in batch.items}))
        detail = f": {redact(verdict.message)}" if verdict.message else ""
        self.refusal = (lane.destination, DestinationRefusedError(
            f"{lane.destination} refused the sender ({verdict.code or verdict.status}"
            f"{detail}) on {batch.account.label()} for audience(s) {audiences}: fix the "
            f"{lane.destination} credentials or their permissions and start again; "
            "nothing from these conversions on was committed"))
