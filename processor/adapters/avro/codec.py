"""Input values read in one format, output values written in another (or the same)."""

from __future__ import annotations

from typing import Any, Protocol

from processor.core.records import SourceRecord


class Decoder(Protocol):
    def decode(self, record: SourceRecord) -> dict[str, Any]: ...


class Encoder(Protocol):
    def prepare(self, traits: dict[str, Any]) -> Any: ...
    def encode(self, event: dict[str, Any], topic: str) -> bytes: ...


class FormatCodec:
    """Input values read in one format, output values written in another (or the same)."""

    def __init__(self, decoder: Decoder, encoder: Encoder) -> None:
        self._decoder = decoder
        self._encoder = encoder

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        return self._decoder.decode(record)

    def prepare(self, traits: dict[str, Any]) -> Any:
        return self._encoder.prepare(traits)

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        return self._encoder.encode(event, topic)
