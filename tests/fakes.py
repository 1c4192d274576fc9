"""Hand-written fakes for unit tests: no broker, no HTTP, no Prometheus."""

from __future__ import annotations

import asyncio
import selectors
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from processor.core.records import Headers, Record
from processor.runtime.ports import DeliveryCallback


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_763_900_000.0) -> None:
        self.now = start
        self.wall = wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _FastForwardSelector(selectors.DefaultSelector):
    """Waits only for real I/O: a wait for a timer moves the fake clock instead."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> Any:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing scheduled: wait for a call from another thread
            return super().select(None)
        self._clock.advance(timeout)
        return super().select(0)


class FakeTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a ``FakeClock``: sleeps and timers take no real time."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(_FastForwardSelector(clock))
        self._fake_clock = clock

    def time(self) -> float:
        return self._fake_clock.monotonic()


class FakeSink:
    """Records what was produced; deliveries are confirmed by ``deliver`` (or ``fail``)."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        self.partitions: list[int] = []  # the partition asked for, for each of ``produced``
        self._pending: list[DeliveryCallback | None] = []
        self.refused: list[str] = []
        self.flushes = 0
        self.refuse = False  # the broker refuses whatever is delivered from now on

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None, on_delivery: DeliveryCallback | None,
                partition: int = -1) -> None:
        self.produced.append((topic, key, value, headers))
        self.partitions.append(partition)
        self._pending.append(on_delivery)

    def deliver(self) -> None:
        if self.refuse:
            self.fail("Local: Message timed out")
            return
        pending, self._pending = self._pending, []
        for callback in pending:
            if callback is not None:
                callback(None, None)

    def fail(self, error: str = "broker down") -> None:
        pending, self._pending = self._pending, []
        for callback in pending:
            if callback is not None:
                callback(error, None)

    def poll(self, timeout: float) -> None:
        self.deliver()

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        self.deliver()
        return 0

    def close(self) -> None:
        self.closed = True

    def on(self, topic: str) -> list[tuple[bytes | None, Any, dict[str, Any]]]:
        """(key, decoded value or raw bytes, headers as a dict) of everything sent to ``topic``."""
        out = []
        for t, key, value, headers in self.produced:
            if t != topic:
                continue
            try:
                decoded: Any = orjson.loads(value) if value is not None else None
            except orjson.JSONDecodeError:
                decoded = value
            out.append((key, decoded, dict(headers or [])))
        return out


class FakeSource:
    """A consumer over a list of records, one partition set, with commits recorded."""

    def __init__(self, batches: list[list[Record]], partitions: list[tuple[str, int]]) -> None:
        self.batches = list(batches)
        self.partitions = partitions
        self.polls = 0
        # Called before each poll: the stage's tests stop it after some turns this way.
        self.before_poll: Any = None
        self.paused = False
        self.paused_ever = False
        self.stored: dict[tuple[str, int], int] = {}
        self.committed_positions: dict[tuple[str, int], int] = {}
        self.closed = False
        self._revoke: Any = None

    def subscribe(self, topics: Any, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self._revoke = on_revoke
        on_assign(self.partitions)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        self.polls += 1
        if self.before_poll is not None:
            self.before_poll(self.polls)
        return self.batches.pop(0) if self.batches else []

    def assignment(self) -> list[tuple[str, int]]:
        return list(self.partitions)

    def pause(self) -> None:
        self.paused = True
        self.paused_ever = True

    def resume(self) -> None:
        self.paused = False

    def store(self, positions: dict[tuple[str, int], int]) -> None:
        self.stored.update(positions)

    def commit(self, positions: dict[tuple[str, int], int]) -> bool:
        self.committed_positions.update(positions)
        return True

    def committed(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: o for tp, o in self.committed_positions.items() if tp in tps}

    def seek(self, positions: dict[tuple[str, int], int]) -> None:
        pass

    def group_metadata(self) -> None:
        return None

    def close(self) -> None:
        if self._revoke:
            self._revoke(self.partitions)
        self.closed = True


class RecordingSensor:
    """Implements ``processor.runtime.ports.Sensor`` by remembering what it was told."""

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()
        self.cache_counts: Counter[str] = Counter()
        self.lookups: Counter[tuple[str, str]] = Counter()
        self.retries: Counter[tuple[str, str]] = Counter()
        self.consumed_total = 0
        self.latencies: list[float] = []
        self.produce_errors = 0
        self.trimmed: Counter[str] = Counter()
        self.commits: list[bool] = []
        self.lags: dict[tuple[str, int], int] = {}
        self.quota: dict[str, bool] = {}
        self.circuit_states: list[int] = []
        self.waits: list[float] = []
        self.in_flight: list[int] = []
        self.buffered_records: list[tuple[int, bool]] = []
        self.states: list[tuple[bool, bool]] = []

    def consumed(self, count: int) -> None:
        self.consumed_total += count

    def outcomes(self, counts: dict[tuple[str, str], int]) -> None:
        self.events.update(counts)

    def cache(self, hits: int, misses: int, coalesced: int) -> None:
        self.cache_counts.update(hit=hits, miss=misses, coalesced=coalesced)

    def lookup(self, provider: str, status: str, seconds: float) -> None:
        self.lookups[(provider, status)] += 1

    def retry(self, provider: str, reason: str) -> None:
        self.retries[(provider, reason)] += 1

    def rate_limited_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def circuit(self, provider: str, state: int) -> None:
        self.circuit_states.append(state)

    def quota_exhausted(self, provider: str, exhausted: bool) -> None:
        self.quota[provider] = exhausted

    def lookups_in_flight(self, count: int) -> None:
        self.in_flight.append(count)

    def buffered(self, records: int, paused: bool) -> None:
        self.buffered_records.append((records, paused))

    def end_to_end(self, seconds: Sequence[float]) -> None:
        self.latencies.extend(seconds)

    def produce_error(self) -> None:
        self.produce_errors += 1

    def dead_letters_trimmed(self, counts: dict[str, int]) -> None:
        self.trimmed.update(counts)

    def committed(self, ok: bool, wall_time: float) -> None:
        self.commits.append(ok)

    def lag(self, lags: dict[tuple[str, int], int]) -> None:
        self.lags = dict(lags)

    def state(self, alive: bool, ready: bool) -> None:
        self.states.append((alive, ready))

    def count(self, outcome: str, reason: str = "") -> int:
        return self.events[(outcome, reason)]


def identify(email: str | None = "ada@example.com", **fields: Any) -> dict[str, Any]:
    """A raw Segment Identify event."""
    event: dict[str, Any] = {"type": "identify", "userId": "user-1",
                             "messageId": "msg-1", "traits": {}}
    if email is not None:
        event["traits"]["email"] = email
    event.update(fields)
    return event


def record(value: Any, offset: int = 0, partition: int = 0, key: bytes | None = None,
           topic: str = "identify.raw", headers: Headers | None = None,
           timestamp_ms: int = 0) -> Record:
    """A consumed record; dict values are JSON-encoded, bytes are taken as they are."""
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Record(topic, partition, offset, raw, key=key, headers=headers,
                  timestamp_ms=timestamp_ms)


class FakeLookups:
    """A lookup pool that records what it is asked; with ``answer``, it answers at once."""

    def __init__(self, answer: Any = None) -> None:
        self.submitted: list[str] = []
        self.done: list[tuple[str, Any]] = []
        self._answer = answer

    def start(self) -> None: ...

    def submit(self, emails: list[str]) -> None:
        self.submitted += emails
        if self._answer is not None:
            self.done += [(e, self._answer(e)) for e in emails]

    def take_completed(self) -> list[tuple[str, Any]]:
        done, self.done = self.done, []
        return done

    @property
    def has_completed(self) -> bool:
        return bool(self.done)

    def stop(self, timeout: float = 5.0) -> None: ...


class MemoryStore:
    """One partition of a state store in a dict; writes return their changelog record."""

    def __init__(self, changelog: str, partition: int) -> None:
        self.data: dict[bytes, bytes] = {}
        self._changelog = changelog
        self._partition = partition

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> Any:
        from processor.runtime.ports import Output

        self.data[key] = value
        return Output(self._changelog, key, value, None, self._partition)

    def delete(self, key: bytes) -> Any:
        from processor.runtime.ports import Output

        self.data.pop(key, None)
        return Output(self._changelog, key, None, None, self._partition)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))


class MemoryStores:
    """A named store over partitions, in memory; ``close(clean=False)`` forgets the data
    (as a real store wipes files it cannot trust), ``restore`` replays a changelog."""

    def __init__(self, name: str, changelog: str) -> None:
        self.name = name
        self.changelog = changelog
        self.open: dict[int, MemoryStore] = {}
        self.closed: list[tuple[list[int], bool]] = []

    def partition(self, partition: int) -> MemoryStore:
        if partition not in self.open:
            self.open[partition] = MemoryStore(self.changelog, partition)
        return self.open[partition]

    def close(self, partitions: list[int], clean: bool) -> None:
        self.closed.append((list(partitions), clean))
        for p in partitions:
            self.open.pop(p, None)

    def owned(self) -> list[int]:
        return sorted(self.open)

    def estimated_records(self) -> int:
        return sum(len(s.data) for s in self.open.values())


class ConversionRecorder(RecordingSensor):
    """The conversions stage's sensor hooks, remembered."""

    def __init__(self) -> None:
        super().__init__()
        self.by_topic: Counter[str] = Counter()
        self.clicks: Counter[str] = Counter()
        self.links = 0
        self.entered: Counter[str] = Counter()
        self.skips: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.written: Counter[str] = Counter()
        self.restores: list[tuple[str, int, float]] = []
        self.state_counts: dict[str, int] = {}

    def records(self, counts: dict[str, int]) -> None:
        self.by_topic.update(counts)

    def clicks_captured(self, counts: dict[str, int]) -> None:
        self.clicks.update(counts)

    def identity_links(self, count: int) -> None:
        self.links += count

    def entries(self, counts: dict[str, int]) -> None:
        self.entered.update(counts)

    def skipped(self, counts: dict[tuple[str, str], int]) -> None:
        self.skips.update(counts)

    def match_keys_dropped(self, counts: dict[tuple[str, str], int]) -> None:
        self.dropped.update(counts)

    def conversions_written(self, counts: dict[str, int]) -> None:
        self.written.update(counts)

    def restored(self, store: str, records: int, seconds: float) -> None:
        self.restores.append((store, records, seconds))

    def state_records(self, store: str, records: int) -> None:
        self.state_counts[store] = records
