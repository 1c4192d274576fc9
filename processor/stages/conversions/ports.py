"""The conversions stage's own seams: its state stores, its decoder, its sensor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from processor.core.records import SourceRecord
from processor.runtime.ports import Output, Sensor


class Store(Protocol):
    """One partition of a keyed state store, on local disk, backed by a changelog.

    Writes return the changelog record that makes them durable: the stage produces
    it with the outputs of the record that caused it (in the same transaction, or
    confirmed before that record's offset is committed)."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> Output: ...
    def delete(self, key: bytes) -> Output: ...
    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with ``prefix``, in byte order."""


class Stores(Protocol):
    """A named store over the partitions this instance owns."""

    name: str

    def partition(self, partition: int) -> Store:
        """The store of ``partition``, restored from its changelog first if it is not open."""

    def close(self, partitions: list[int], clean: bool) -> None:
        """Close them; ``clean=False`` means the local files are not to be trusted again
        (an aborted transaction may have written to them): the next open restores all."""

    def owned(self) -> list[int]: ...

    def estimated_records(self) -> int:
        """About how many keys the open partitions hold (for the state_records metric)."""


class Decoder(Protocol):
    def decode(self, record: SourceRecord) -> dict[str, Any]:
        """Raises ``DecodeError`` (or a subclass) for bytes that are not an event."""


class ConversionSensor(Sensor, Protocol):
    """The runtime's hooks, and counts by bounded labels (audience keys come from config)."""

    def records(self, counts: dict[str, int]) -> None:
        """Records consumed, by topic."""
    def clicks_captured(self, counts: dict[str, int]) -> None:
        """By click type."""
    def identity_links(self, count: int) -> None: ...
    def entries(self, counts: dict[str, int]) -> None:
        """By audience."""
    def skipped(self, counts: dict[tuple[str, str], int]) -> None:
        """By (audience or "", reason)."""
    def match_keys_dropped(self, counts: dict[tuple[str, str], int]) -> None:
        """By (platform, reason): raw values that could not be normalised."""
    def conversions_written(self, counts: dict[str, int]) -> None:
        """By audience."""
    def restored(self, store: str, records: int, seconds: float) -> None: ...
    def state_records(self, store: str, records: int) -> None: ...
