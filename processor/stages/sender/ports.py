"""The sender's own seams: the ad platforms' clients, partition holds, its sensor."""

from __future__ import annotations

from typing import Any, Protocol

from processor.core.conversions.sending import Account, Destination
from processor.core.conversions.verdicts import Verdict
from processor.core.offsets import TopicPartition
from processor.runtime.ports import Sensor


class PlatformClient(Protocol):
    """One ad platform's API. Runs on the delivery pool's event loop."""

    @property
    def destination(self) -> Destination: ...

    async def send(self, account: Account, payloads: list[dict[str, Any]],
                   test: bool) -> Verdict:
        """One request with these events (or rows); what the answer means. Never raises
        for an answer or a transport failure: those are verdicts too."""

    async def aclose(self) -> None: ...


class PartitionGate(Protocol):
    """Stops and restarts fetching of single partitions (the consumer's pause/resume),
    whatever the loop's own backpressure does meanwhile."""

    def hold(self, tps: list[TopicPartition]) -> None: ...
    def release(self, tps: list[TopicPartition]) -> None: ...


class SenderSensor(Sensor, Protocol):
    """The runtime's hooks and the sender's, by bounded labels: destinations, HTTP
    statuses, audiences (from the configuration), the platforms' codes."""

    def request(self, destination: str, status: str, seconds: float, events: int) -> None:
        """One request answered (called from the delivery pool's thread)."""
    def retry(self, destination: str, reason: str) -> None:
        """A batch scheduled again: throttled, or a transient failure (pool thread)."""
    def circuit(self, destination: str, state: int) -> None: ...
    def sent(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Results by (destination, audience, status)."""
    def reasons(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Results other than a plain acceptance by (destination, status, reason)."""
    def match_keys(self, counts: dict[tuple[str, str], int]) -> None:
        """Match keys sent with delivered conversions, by (destination, key)."""
    def delayed(self, counts: dict[tuple[str, str], int]) -> None:
        """Conversions put on the delay topic, by (destination, reason)."""
    def pending(self, counts: dict[str, int]) -> None:
        """Conversions not yet answered, by destination (batching, in flight, waiting)."""
    def stopped(self, destination: str) -> None:
        """A destination refused the credentials: the stage stops."""
