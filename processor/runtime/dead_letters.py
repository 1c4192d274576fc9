"""Dead letters: the original record, unchanged, with headers that say what went wrong.

The headers follow Kafka Connect's ``errors.deadletterqueue.context.headers.enable``
names (``__connect.errors.*``), so existing tooling reads them, plus two of the
stage's own: the machine-readable reason and when the record was dead-lettered.
Both stages write them; ``processor replay-dlq`` reads and strips them.
"""

from __future__ import annotations

from processor.core.errors import RecordError
from processor.core.records import Headers, SourceRecord, header_list
from processor.core.redact import redact

CONNECT_PREFIX = "__connect.errors."


class DeadLetterHeaders:
    """The header names of one stage's dead letters (``__<stage>.errors.*``)."""

    def __init__(self, stage: str) -> None:
        self.prefix = f"__{stage}.errors."
        self.reason = self.prefix + "reason"
        self.failed_at = self.prefix + "timestamp"

    def build(self, record: SourceRecord, error: RecordError, now_ms: int, *,
              reason: str | None = None, extra: dict[str, str] | None = None,
              keep: Headers | None = None) -> Headers:
        """The record's own headers (or ``keep``), then the ones that explain its failure:
        ``reason`` instead of the error's class reason when the cause has a finer name (an
        ad platform's code), and ``extra`` as ``__<stage>.errors.<name>``."""
        own = header_list(record.headers()) if keep is None else keep
        return [*own,
                (CONNECT_PREFIX + "topic", (record.topic() or "").encode()),
                (CONNECT_PREFIX + "partition", str(record.partition()).encode()),
                (CONNECT_PREFIX + "offset", str(record.offset()).encode()),
                (CONNECT_PREFIX + "exception.class.name", _class_name(error).encode()),
                (CONNECT_PREFIX + "exception.message", redact(error.message).encode()),
                (self.reason, (reason or error.reason).encode()),
                (self.failed_at, str(now_ms).encode()),
                *((self.prefix + name, redact(value).encode())
                  for name, value in (extra or {}).items())]

    def original(self, headers: Headers) -> Headers:
        """``headers`` without the ones a dead letter added."""
        return [(k, v) for k, v in headers
                if not k.startswith((CONNECT_PREFIX, self.prefix))]


ENRICHMENT = DeadLetterHeaders("enrichment")


def _class_name(error: Exception) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"
