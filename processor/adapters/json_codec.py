"""Event codecs: JSON (orjson) here; Avro with a schema registry in ``processor.adapters.avro``."""

from __future__ import annotations

from typing import Any

import orjson

from processor.core.errors import DecodeError, NotAnObjectError
from processor.core.records import SourceRecord


class JsonCodec:
    """One JSON object per record value, UTF-8."""

    def decode(self, record: SourceRecord) -> dict[str, Any]:
        try:
            event = orjson.loads(record.value() or b"")
        except orjson.JSONDecodeError as error:
            # orjson's message names the position, never the content.
            raise DecodeError(f"value is not valid JSON: {error}") from None
        if not isinstance(event, dict):
            raise NotAnObjectError(f"value is JSON but not an object ({type(event).__name__})")
        return event

    def prepare(self, traits: dict[str, Any]) -> orjson.Fragment:
        # Serialised once per email; each event then splices the bytes in as they are
        # (measured: 0.5 us per event instead of 5.5 us for 100 traits). Copied because
        # orjson's output keeps its whole growth buffer: 31.8 KiB held for 5 kB of JSON,
        # 5.1 KiB once copied (measured), and the cache keeps tens of thousands of these.
        return orjson.Fragment(bytes(bytearray(orjson.dumps(traits))))

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        return orjson.dumps(event)
