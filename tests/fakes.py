"""Hand-written fakes for unit tests: no broker, no HTTP, no Prometheus."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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


class FakeSink:
    """Records what was produced; deliveries are confirmed by ``deliver`` (or ``fail``)."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        self._pending: list[DeliveryCallback | None] = []
        self.failures: list[str] = []
        self.flushes = 0
        self.refuse = False  # the broker refuses whatever is delivered from now on

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None, on_delivery: DeliveryCallback | None) -> None:
        self.produced.append((topic, key, value, headers))
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
        self.paused = False
        self.stored: dict[tuple[str, int], int] = {}
        self.committed_positions: dict[tuple[str, int], int] = {}
        self.closed = False
        self._revoke: Any = None

    def subscribe(self, topic: str, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self._revoke = on_revoke
        on_assign(self.partitions)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        return self.batches.pop(0) if self.batches else []

    def assignment(self) -> list[tuple[str, int]]:
        return list(self.partitions)

    def pause(self) -> None:
        self.paused = True

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
