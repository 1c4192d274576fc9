"""Consumer lag as ``kafka-consumer-groups`` computes it, for the partitions we own.

Every ``interval`` seconds a background thread asks the brokers (through an
AdminClient, not the consumer, so a busy or stuck main loop does not stop it)
for the log-end offset of each owned partition and the group's committed
offset, and reports ``log-end - committed``. A partition with no commit yet
counts from where this group will start reading it: its log-start offset
(``auto_offset_reset="earliest"``, the default) or its end (``"latest"``, lag 0).
Only partitions this instance owns are reported, so summing over the replicas
of the group gives the group's lag without double counting.

The log-end offset is the high watermark (read_uncommitted), as
``kafka-consumer-groups --describe`` and KEDA's Kafka scaler use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from processor.adapters.library_internals import OffsetSpec
from processor.core.offsets import TopicPartition as TP
from processor.runtime.ports import Sensor

log = logging.getLogger(__name__)


class LagMonitor:
    def __init__(self, admin_config: Mapping[str, Any], group_id: str, sensor: Sensor,
                 interval: float = 5.0, timeout: float = 10.0,
                 auto_offset_reset: str = "earliest") -> None:
        self._admin = AdminClient(dict(admin_config))
        self._group = group_id
        self._from_start = auto_offset_reset != "latest"
        self._sensor = sensor
        self._interval = interval
        self._timeout = timeout
        self._owned: frozenset[TP] = frozenset()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-monitor", daemon=True)

    def owned(self, tps: list[TP]) -> None:
        """The partitions this instance owns now (called on every rebalance)."""
        self._owned = frozenset(tps)
        self._wake.set()

    @property
    def partitions(self) -> frozenset[TP]:
        """The partitions measured now: those this instance owns."""
        return self._owned

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(self._timeout + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sensor.lag(self.measure(sorted(self._owned)))
            except (KafkaException, OSError, RuntimeError) as error:
                log.warning("could not measure consumer lag: %s", error)
            self._wake.wait(self._interval)
            self._wake.clear()

    def measure(self, tps: list[TP]) -> dict[TP, int]:
        if not tps:
            return {}
        parts = [TopicPartition(t, p) for t, p in tps]
        request = [ConsumerGroupTopicPartitions(self._group, parts)]
        future = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout)
        committed: dict[TP, int] = {}
        for result in future[self._group].result().topic_partitions:
            if result.offset >= 0:
                committed[(result.topic, result.partition)] = result.offset
        ends = self._offsets(parts, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        missing = [TopicPartition(t, p) for t, p in tps if (t, p) not in committed]
        starts: dict[TP, int] = {}
        if missing and self._from_start:
            starts = self._offsets(missing, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        return {tp: max(0, end - committed.get(tp, starts.get(tp, end)))
                for tp, end in ends.items()}

    def _offsets(self, parts: list[TopicPartition], spec: Any) -> dict[TP, int]:
        futures = self._admin.list_offsets({p: spec for p in parts},
                                           request_timeout=self._timeout)
        return {(p.topic, p.partition): f.result().offset for p, f in futures.items()}
