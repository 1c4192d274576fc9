"""Every error this package raises, in one tree.

::

    ProcessorError                  base of everything below
    ├── ConfigError                 a setting is wrong; the CLI prints one line, exit 2
    │   └── AudienceError           the conversions audiences file is wrong (names the audience)
    ├── FatalError                  the stage must stop; nothing in flight is committed
    │   ├── ProviderAuthError       the provider refused the key (401/403)
    │   ├── DestinationRefusedError an ad platform refused the credentials or a permission
    │   ├── DeliveryError           an output or dead letter could not be delivered
    │   └── UnexpectedError         anything else raised in the stage: a bug, stopped like the rest
    ├── RecordError                 one record cannot be processed: it is dead-lettered
    │   ├── DecodeError             the value is not an event: not JSON, not an object, not Avro
    │   │   ├── NotAnObjectError        valid JSON, but not an object
    │   │   ├── AvroBadMagicByteError   not the Confluent wire format (magic byte 0, schema id)
    │   │   ├── AvroUnknownSchemaError  the registry has no Avro schema for the id it names
    │   │   └── AvroDecodeError         the Avro body does not decode with its writer schema
    │   ├── InvalidFieldError       a field has the wrong type
    │   ├── MissingIdentityError    neither userId nor anonymousId
    │   ├── InvalidEmailError       the email is not a syntactically valid address
    │   ├── ProviderRejectedError   the provider answered 422 for this email
    │   ├── RetriesExhaustedError   a retryable failure outlived its retries or deadline
    │   ├── LookupPendingError      the provider kept answering 202 past the deadline
    │   ├── UnusableAnswerError     the provider's 200 cannot be read: not decodable, not JSON,
    │   │   │                       not the expected shape (this email's answer, not its health)
    │   │   └── AnswerTooLargeError     the answer is larger than PROCESSOR_MAX_ANSWER_BYTES
    │   ├── OutputTooLargeError     an output is larger than its topic takes (either stage)
    │   ├── UnreadableInternalError a repartition record the conversions stage cannot read
    │   ├── UnreadableConversionError  a conversions-topic record the sender cannot read
    │   └── PlatformRejectedError   an ad platform refused one conversion for good
    └── ProviderError               a lookup attempt failed (handled inside the lookup pool)
        ├── TransientProviderError  timeout, 5xx, connection error: retry with backoff
        ├── RateLimitedError        429: the whole pool waits until ``retry_at``
        └── QuotaExhaustedError     402: the whole pool pauses and probes periodically

Each class says whether retrying can help (``retryable``). A ``RecordError``
carries the source record it is about, so a dead letter can always be built,
and a machine-readable ``reason`` that goes into the dead letter's headers.

No message built here contains an API key or a raw email address: the dead
letter keeps the original bytes, and logs and headers are read by more people
than the data is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from processor.core.redact import redact

if TYPE_CHECKING:
    from processor.core.records import SourceRecord


class ProcessorError(Exception):
    """Base class of every error raised by this package."""

    retryable: ClassVar[bool] = False


class ConfigError(ProcessorError):
    """A setting is missing or invalid. The message names the variable and what to fix."""


class AudienceError(ConfigError):
    """The audiences file of the conversions stage cannot be used. The message names the
    file and the audience, and says what to fix."""


class FatalError(ProcessorError):
    """The stage cannot go on; records in flight are left uncommitted for the next run."""

    exit_code: ClassVar[int] = 3


class ProviderAuthError(FatalError):
    """The enrichment provider refused the API key."""


class DestinationRefusedError(FatalError):
    """An ad platform refused the sender's credentials or a permission (a bad token, a
    missing grant, an account not allowed): no conversion can go there until it is fixed.
    The message names the audience and the destination, never the credential."""


class DeliveryError(FatalError):
    """Kafka did not confirm delivery of an output or dead letter."""


class UnexpectedError(FatalError):
    """An exception nobody foresaw (a bug, a library failing in a new way). The stage
    stops as for any fatal error rather than crashing with a traceback: exit 3, and
    nothing past the failure is committed, so the next run processes it again."""

    @classmethod
    def of(cls, error: BaseException, where: str) -> UnexpectedError:
        # The library's text may quote data (a key, an address): redacted.
        return cls(f"unexpected {type(error).__name__} in {where}: {redact(str(error))}")


class RecordError(ProcessorError):
    """One record cannot be processed and goes to the dead-letter topic."""

    reason: ClassVar[str] = "unprocessable"

    def __init__(self, message: str, record: SourceRecord | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.record = record

    def with_record(self, record: SourceRecord) -> RecordError:
        """Attach the record this error is about (decoders do not know it) and return self."""
        self.record = record
        return self


class DecodeError(RecordError):
    """The value is not an event: not valid JSON, not a JSON object, or not decodable Avro."""

    reason = "not_json"


class NotAnObjectError(DecodeError):
    """The value is valid JSON but not an object."""

    reason = "not_an_object"


class InvalidFieldError(RecordError):
    """A field is present but of the wrong type."""

    reason = "invalid_field"


class MissingIdentityError(RecordError):
    """An identify call with neither userId nor anonymousId."""

    reason = "missing_identity"


class InvalidEmailError(RecordError):
    """The email trait is not a syntactically valid address (decided locally, no lookup)."""

    reason = "invalid_email"


class ProviderRejectedError(RecordError):
    """The provider answered 422: it will never accept this email."""

    reason = "provider_rejected"


class RetriesExhaustedError(RecordError):
    """Retryable failures went on past the configured attempts or deadline."""

    reason = "retries_exhausted"


class LookupPendingError(RecordError):
    """The provider kept the lookup queued (202) past the configured deadline."""

    reason = "lookup_pending_timeout"


class UnusableAnswerError(RecordError):
    """The provider answered this email, but with something that cannot be used: a body
    that does not decode (its Content-Encoding), is not JSON, or is not shaped as an
    answer. Not retried (the same email gets the same answer, and each lookup may be
    paid for) and no mark against the provider's health: one email's odd answer must
    not open the circuit for everybody. ``status`` is its label in the lookup metrics."""

    reason = "bad_answer"
    status: ClassVar[str] = "bad_body"


class AnswerTooLargeError(UnusableAnswerError):
    """The answer is larger than the configured cap; it was not read past the cap."""

    reason = "answer_too_large"
    status = "too_large"


class OutputTooLargeError(RecordError):
    """The record's output is larger than the output topic's ``max.message.bytes`` allows
    (``processor.runtime.size_limits``): the input is dead-lettered instead."""

    reason = "output_too_large"


class UnreadableInternalError(RecordError):
    """A record on the conversions stage's own repartition topics that it cannot read."""

    reason = "unreadable_internal"


class UnreadableConversionError(RecordError):
    """A record on the conversions topic that is not a conversion the sender can send
    (``schemas/conversion.schema.json``)."""

    reason = "unreadable_conversion"


class PlatformRejectedError(RecordError):
    """An ad platform refused one conversion for good. The dead letter's reason header is
    the platform's own code (``meta_100_2804001``, ``google_invalid_sha256_format``)."""

    reason = "platform_rejected"


class ProviderError(ProcessorError):
    """One lookup attempt failed; the lookup pool decides what happens next."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """Timeout, connection error or 5xx: worth retrying after a backoff."""

    retryable = True


class RateLimitedError(ProviderError):
    """429: the provider wants the whole client to wait until ``retry_at`` (monotonic s)."""

    retryable = True

    def __init__(self, message: str, retry_at: float | None) -> None:
        super().__init__(message, status="429")
        self.retry_at = retry_at


class QuotaExhaustedError(ProviderError):
    """402: the plan's quota is used up; pause, alert, and probe again later."""

    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message, status="402")


# --- Avro (Confluent wire format); raised by ``processor.adapters.avro`` --------------


class AvroBadMagicByteError(DecodeError):
    """The value does not start with the Confluent wire format's magic byte 0 and a
    4-byte schema id (JSON on an Avro topic, for example)."""

    reason = "avro_bad_magic_byte"


class AvroUnknownSchemaError(DecodeError):
    """The schema registry answers that the value's schema id does not exist, or names a
    schema that is not Avro or cannot be read as an Identify."""

    reason = "avro_unknown_schema"


class AvroDecodeError(DecodeError):
    """The Avro body does not decode with its writer schema: truncated, trailing bytes,
    invalid UTF-8, or a JSON-text field that is not JSON."""

    reason = "avro_decode_error"


def dead_letter_reasons() -> tuple[str, ...]:
    """Every reason a dead letter can carry: the ``reason`` of each ``RecordError`` class,
    in the order they are defined (for metrics pre-registration and documentation)."""
    found: dict[str, None] = {}
    pending: list[type[RecordError]] = [RecordError]
    while pending:
        cls = pending.pop(0)
        if cls is not RecordError:
            found[cls.reason] = None
        pending.extend(cls.__subclasses__())
    return tuple(found)
