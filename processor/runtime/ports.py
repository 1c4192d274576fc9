"""The seams between a stage and the world: the runtime and the adapters meet here.

The stage loop and each stage's pipeline import only these Protocols, never
``confluent_kafka`` or ``prometheus_client``; the composition root
(``processor.entrypoints.bootstrap``) decides which adapter stands behind each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from processor.core.errors import FatalError
from processor.core.offsets import TopicPartition
from processor.core.records import Headers, SourceRecord

DeliveryCallback = Callable[[Any, Any], None]  # (error or None, delivered message)
RebalanceCallback = Callable[[list[TopicPartition]], None]


class Output(NamedTuple):
    """One record to produce: an output, a dead letter or a changelog record.

    ``partition`` is -1 to let the producer's partitioner choose by key; a changelog
    record names its store's partition, since changelog partition p backs input p.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    partition: int = -1


# --- Kafka ---------------------------------------------------------------------


class Sink(Protocol):
    """Where outputs and dead letters go."""

    refused: list[str]  # deliveries the broker refused for good, as reported by poll/flush

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        on_delivery: DeliveryCallback | None,
        partition: int = -1,
    ) -> None: ...

    def poll(self, timeout: float) -> None:
        """Serve delivery callbacks."""

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still outstanding."""

    def close(self) -> None: ...


class TransactionalSink(Sink, Protocol):
    """A sink that can also commit outputs and input offsets atomically."""

    def begin(self) -> None: ...

    def commit_transaction(self, positions: Mapping[TopicPartition, int], group_metadata: Any,
                           timeout: float) -> None:
        """Raises ``DeliveryError`` when aborted (rewind and go on), ``FatalError`` otherwise."""

    def abort(self, timeout: float) -> None: ...


class Source(Protocol):
    """Where input records come from: a consumer group member."""

    paused: bool

    def subscribe(self, topics: Sequence[str], on_assign: RebalanceCallback,
                  on_revoke: RebalanceCallback, on_lost: RebalanceCallback) -> None: ...
    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord]: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def store(self, positions: Mapping[TopicPartition, int]) -> None:
        """Positions for the background commit (at-least-once)."""
    def commit(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Synchronous commit; False when the broker refused."""
    def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    def seek(self, positions: Mapping[TopicPartition, int]) -> None: ...
    def group_metadata(self) -> Any: ...
    def close(self) -> None: ...


# --- a stage's own work ----------------------------------------------------------


class Pipeline(Protocol):
    """What one stage does to its records; the loop (``processor.runtime.loop``) drives it.

    Records are tracked per partition in an offset ledger: at-least-once, outputs are
    produced as soon as they may go and ``advance`` reports positions over confirmed
    records; transactional, outputs are only decided and ``take_decided`` hands them
    over with the positions they reach.
    """

    refused: list[str]  # deliveries the broker refused for good; the stage stops on one
    fatal: FatalError | None  # set when the stage must stop

    def start(self) -> None:
        """Before the first poll (load caches, start workers)."""

    def poll_timeout(self) -> float:
        """How long the next poll may wait: 0 when finished work is waiting to be taken."""

    def handle(self, records: Sequence[SourceRecord]) -> None: ...

    def pump(self) -> None:
        """Take whatever finished in the background since the last call."""

    def assigned(self, tps: list[TopicPartition]) -> None: ...
    def advance(self) -> dict[TopicPartition, int]: ...
    def take_decided(self) -> tuple[list[Output], dict[TopicPartition, int]]: ...
    def positions(self) -> dict[TopicPartition, int]: ...
    def outstanding(self) -> int: ...
    def unfinished(self, tps: list[TopicPartition] | None = None) -> int: ...
    def drop(self, tps: list[TopicPartition], *, committed: bool = False) -> None:
        """Forget ``tps``; ``committed``: everything done on them is committed (a revoke
        after its final commit), so state kept for them may be trusted later."""
    def report(self) -> None: ...
    def stop(self) -> None: ...


# --- observation ---------------------------------------------------------------


class Sensor(Protocol):
    """What the runtime reports; each stage's sensor adds its own hooks.

    Hooks take counts so the hot path can report once per batch, not per record.
    """

    def consumed(self, count: int) -> None: ...
    def outcomes(self, counts: dict[tuple[str, str], int]) -> None:
        """Counts by (outcome, reason); reason is "" for records that produced an output."""
    def buffered(self, records: int, paused: bool) -> None: ...
    def end_to_end(self, seconds: Sequence[float]) -> None: ...
    def produce_error(self) -> None: ...
    def dead_letters_trimmed(self, counts: dict[str, int]) -> None:
        """Dead letters that left out part of the original to fit their topic, by reason."""
    def committed(self, ok: bool, wall_time: float) -> None: ...
    def lag(self, lags: dict[tuple[str, int], int]) -> None:
        """The full current set: partitions missing from it are no longer ours."""
    def state(self, alive: bool, ready: bool) -> None: ...
