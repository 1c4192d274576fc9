"""Changelog topics on Kafka: reading them back into stores (``ChangelogReader``) and the
start-up checks that they can back a store at all (``verify_changelogs``).

The reader is a consumer of its own, ``assign()``ed to the changelog partitions it
restores (it never joins a group nor commits), reading committed records only: writes
of aborted transactions must not come back. It reads from where each restore starts up
to the last stable offset; when it gets there while a transaction is still open on the
partition (the previous owner's last one, its markers on their way), it waits for that
transaction to end and reads what it committed too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports it from here, but its stubs don't say so.
from confluent_kafka.admin._config import ConfigResource

from processor.core.errors import ConfigError, FatalError
from processor.runtime.state import Restored, RestoreProgress

log = logging.getLogger(__name__)

ChangelogPartition = tuple[str, int]  # (changelog topic, partition)


class Restorable(Protocol):
    """Where restored records go: ``processor.adapters.state_store.RocksDBStore``."""

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None: ...


def _on_error(error: KafkaError) -> None:
    log.warning("changelog client error: %s", error.str())


class ChangelogReader:
    """Restores store partitions from their changelog partitions, several at a time."""

    def __init__(self, config: Mapping[str, Any], *, batch: int = 10_000,
                 stall_timeout: float = 60.0, settle_timeout: float = 70.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``config``: the stage's consumer configuration (address, security); the
        settings that make this a restore consumer are laid over it.

        ``stall_timeout``: how long a restore may go without a record before it fails.
        ``settle_timeout``: how long to wait for a transaction left open on a changelog
        partition (a previous owner's last one) before ending the restore anyway; a
        little more than the producers' ``transaction.timeout.ms``, after which the broker
        aborts it.
        """
        client: dict[str, Any] = {"error_cb": _on_error, **config}
        group = str(client.get("group.id") or "processor")
        consumer = {**client, **{
            "group.id": f"{group}.restore",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,  # the end is also reached past markers
            "auto.offset.reset": "earliest",
            # The prefetch is bounded by bytes only (memory): fetches of 8 MiB into a
            # 16 MiB queue cost ~40 MB more peak RSS for no clear gain in restore rate.
            "max.partition.fetch.bytes": 2 * 1024 * 1024,
            "queued.max.messages.kbytes": 4 * 1024,
            "queued.min.messages": 1_000_000,
            # librdkafka waits this long to fetch again once its queue is full (1 s by
            # default): restoring 300k records took 4.0 s with the default, 1.4 s with it.
            "fetch.queue.backoff.ms": 10,
            # How long the broker holds a fetch that finds nothing new (500 ms by
            # default): restoring 20k records took 0.2-1.2 s with the default, 0.06-0.13 s
            # with this.
            "fetch.wait.max.ms": 100,
        }}
        try:
            self._consumer = Consumer(consumer)
        except (KafkaException, ValueError, TypeError) as error:
            raise ConfigError(f"changelog reader configuration rejected: {error}") from None
        self._batch = batch
        self._stall_timeout = stall_timeout
        self._settle_timeout = settle_timeout
        self._clock = clock
        # Partitions whose fetch reached the end (an end-of-partition event): only then
        # does the cached high watermark come from a fetch rather than from ``ends``.
        self._fetched_to_end: set[ChangelogPartition] = set()

    # --- offsets ---------------------------------------------------------------------

    def ends(self, partitions: Sequence[ChangelogPartition], timeout: float = 30.0
             ) -> dict[ChangelogPartition, tuple[int, int]]:
        """(low watermark, last stable offset) of each changelog partition, asked by the
        reader itself (read_committed): its connection to the leader is then up for the
        fetches. (An admin client's first request waited a second or three for its
        connection in one start in three.)"""
        ends: dict[ChangelogPartition, tuple[int, int]] = {}
        for topic, partition in partitions:
            try:
                low, end = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout)
            except KafkaException as error:
                raise FatalError(f"could not read the offsets of changelog partition "
                                 f"{topic}[{partition}]: {error.args[0].str()}") from None
            ends[(topic, partition)] = (int(low), int(end))
        return ends

    # --- restoring -------------------------------------------------------------------

    def restore(self, work: Sequence[tuple[RestoreProgress, str, Restorable]]
                ) -> list[Restored]:
        """Read each ``(progress, changelog, store)`` from its start to its end into its
        store, in write batches; blocks until all are done.

        A partition is done once the reader is at its end and a fetch has shown nothing
        beyond it. Something beyond it (the high watermark past the last stable offset) is
        a transaction still open or records written meanwhile: the end moves up to what is
        committed, and an open transaction is waited for up to ``settle_timeout``.
        Fails with ``FatalError`` when a partition short of its end gets no record for
        ``stall_timeout``.
        """
        started = self._clock()
        results: list[Restored] = []
        pending = {(changelog, progress.partition): (progress, store)
                   for progress, changelog, store in work}
        if not pending:
            return results
        # Partitions already at their end are read too: only a fetch tells whether a
        # transaction is open on them.
        self._consumer.assign([TopicPartition(t, p, progress.start)
                               for (t, p), (progress, _) in pending.items()])
        last_record = started
        at_end: dict[ChangelogPartition, float] = {}  # since when, for the open-transaction wait
        self._fetched_to_end.clear()
        try:
            while pending:
                # What is fetched already, without waiting for a full batch; only when
                # there is nothing does it wait, and then for one record.
                messages = (self._consumer.consume(self._batch, 0)
                            or self._consumer.consume(1, 0.2))
                if messages:
                    self._apply(messages, pending)
                    last_record = self._clock()
                self._positions(pending)
                now = self._clock()
                for tp, (progress, _) in list(pending.items()):
                    if not progress.done:
                        continue
                    waited = now - at_end.setdefault(tp, now)
                    if self._settled(tp, progress, waited > self._settle_timeout):
                        del pending[tp]
                        results.append(progress.result(now - started))
                behind = [tp for tp, (progress, _) in pending.items() if not progress.done]
                if behind and now - last_record > self._stall_timeout:
                    raise FatalError(f"restoring {_names(behind)} made no progress for "
                                     f"{self._stall_timeout:.0f}s")
        finally:
            self._consumer.unassign()
        return results

    def _settled(self, tp: ChangelogPartition, progress: RestoreProgress,
                 give_up: bool) -> bool:
        """Whether a partition at its end is done (see ``restore``)."""
        if tp not in self._fetched_to_end:
            return False
        _, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        if high <= progress.end:
            return True
        (_, stable), = self.ends([tp]).values()
        if stable > progress.end:
            progress.extend(stable)
            return False
        if give_up:
            log.warning("a transaction is still open on %s after %.0fs; restored up to its "
                        "start", _names([tp]), self._settle_timeout)
            return True
        return False

    def _apply(self, messages: list[Any],
               pending: dict[ChangelogPartition, tuple[RestoreProgress, Restorable]]) -> None:
        """Apply one consumed batch, one write per changelog partition.

        Records come in runs of one partition: the partition is looked up once per run,
        which is what keeps this loop at a few method calls per record."""
        changes: dict[ChangelogPartition, list[tuple[bytes, bytes | None]]] = {}
        ends: dict[ChangelogPartition, int] = {}
        current: ChangelogPartition = ("", -1)
        batch: list[tuple[bytes, bytes | None]] | None = None
        for message in messages:
            if message.error() is not None:
                self._event(message, pending)
                continue
            partition, topic = message.partition(), message.topic()
            if partition != current[1] or topic != current[0]:
                current = (topic, partition)
                entry = pending.get(current)
                batch = None if entry is None else changes.setdefault(current, [])
            # Records past the end (committed since it was taken) are applied too: they
            # are the changelog's newer truth, and skipping them would lose them.
            if batch is None:
                continue
            key = message.key()
            if key is not None:  # a keyless record cannot be a store entry: skipped
                batch.append((key, message.value()))
            ends[current] = message.offset() + 1
        for tp, next_offset in ends.items():
            progress, store = pending[tp]
            applied = changes[tp]
            if applied:
                store.apply(applied)
            progress.applied(len(applied), next_offset)

    def _event(self, message: Any,
               pending: dict[ChangelogPartition, tuple[RestoreProgress, Restorable]]) -> None:
        error = message.error()
        if error.code() == KafkaError._PARTITION_EOF:
            tp = (message.topic(), message.partition())
            entry = pending.get(tp)
            if entry is not None:
                entry[0].reached(message.offset())
                self._fetched_to_end.add(tp)
        elif error.fatal():
            raise FatalError(f"changelog consumer failed: {error.str()}")
        else:
            log.warning("changelog consumer error: %s", error.str())

    def _positions(self, pending: dict[ChangelogPartition,
                                       tuple[RestoreProgress, Restorable]]) -> None:
        """The reader's positions, which also move past transaction markers and aborted
        records, none of which is ever delivered."""
        for tp in self._consumer.position([TopicPartition(t, p) for t, p in pending]):
            if tp.offset >= 0:
                pending[(tp.topic, tp.partition)][0].reached(tp.offset)

    def close(self) -> None:
        self._consumer.close()


def _admin_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without a consumer's own settings, which an admin client would warn
    about: the address, security and client settings stay."""
    consumer_only = ("group.", "enable.auto", "auto.", "isolation.", "partition.", "queued.",
                     "fetch.", "max.partition.", "enable.partition.", "session.",
                     "heartbeat.", "max.poll.")
    return {k: v for k, v in config.items() if not k.startswith(consumer_only)}


def _names(partitions: Iterable[ChangelogPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(partitions))


# --- start-up checks ---------------------------------------------------------------------


def verify_changelogs(config: Mapping[str, Any], changelogs: Mapping[str, str],
                      timeout: float) -> None:
    """Refuse to start, saying what to fix, unless every changelog (mapped to the input
    topic its store is co-partitioned with) exists, is compacted and has exactly as many
    partitions as its input: changelog partition p holds the state of input partition p.

    Like the other topics, changelogs are never created here: partition counts and
    compaction settings are the owner's call.
    """
    admin = AdminClient(_admin_config({"error_cb": _on_error, **config}))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        raise FatalError(f"could not reach Kafka at {config.get('bootstrap.servers')} within "
                         f"{timeout:.0f}s: {error.args[0].str()}") from None

    def partitions(topic: str) -> int | None:
        found = metadata.topics.get(topic)
        return None if found is None or found.error is not None else len(found.partitions)

    problems: list[str] = []
    present: list[str] = []
    for changelog, input_topic in changelogs.items():
        have, want = partitions(changelog), partitions(input_topic)
        if want is None:
            problems.append(f"input topic '{input_topic}' of changelog '{changelog}' does not "
                            "exist; create it first")
        elif have is None:
            problems.append(f"changelog topic '{changelog}' does not exist; create it with "
                            f"{want} partitions (as '{input_topic}') and cleanup.policy=compact")
        elif have != want:
            problems.append(f"changelog topic '{changelog}' has {have} partitions but its input "
                            f"'{input_topic}' has {want}; they must match (changelog partition "
                            f"p holds the state of input partition p): recreate '{changelog}' "
                            f"with {want} partitions")
        if have is not None:
            present.append(changelog)
    for changelog, policy in _cleanup_policies(admin, present, timeout).items():
        if "compact" not in policy.split(","):
            problems.append(f"changelog topic '{changelog}' has cleanup.policy={policy}; set "
                            "cleanup.policy=compact (kafka-configs.sh --alter --entity-type "
                            f"topics --entity-name {changelog} --add-config "
                            "cleanup.policy=compact), or state older than its retention is "
                            "lost")
    if problems:
        raise ConfigError("\n".join(problems))


def _cleanup_policies(admin: AdminClient, topics: Sequence[str],
                      timeout: float) -> dict[str, str]:
    if not topics:
        return {}
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)
                                      for topic in topics], request_timeout=timeout)
    policies: dict[str, str] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout)
        except KafkaException as error:
            raise FatalError(f"could not read the configuration of topic '{resource.name}': "
                             f"{error.args[0].str()}") from None
        entry = entries.get("cleanup.policy")
        policies[resource.name] = str(entry.value) if entry is not None else "delete"
    return policies
