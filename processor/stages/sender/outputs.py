"""The records the sender writes: audit records, dead letters, delay-topic records.

A dead letter is the conversions-topic record unchanged (the delay topic's own headers
left out, so a replay to the conversions topic sends it anew) with the runtime's
dead-letter headers, the platform's code as the reason, and the destination; held to
the dead-letter topic's limit as every stage's are. A delay-topic record is the record
with three headers more: one the delay topic cannot take is dead-lettered
(``output_too_large``) rather than left to stop the stage.
"""

from __future__ import annotations

import orjson

from processor.core.conversions.audit import Status, sent_key, sent_record
from processor.core.conversions.record import Conversion
from processor.core.conversions.sending import Destination, account_of
from processor.core.errors import PlatformRejectedError, RecordError, RetriesExhaustedError
from processor.core.records import Headers, SourceRecord, header_list
from processor.runtime.dead_letters import DeadLetterHeaders
from processor.runtime.ports import Output
from processor.runtime.size_limits import TopicLimits

CONVERSIONS = DeadLetterHeaders("conversions")
NOT_BEFORE = "conversions.not_before"  # delay topic: not to be sent before (ms)
DELAYS = "conversions.delays"  # delay topic: how many times it was put there
EMITTED_AT = "conversions.emitted_at"  # delay topic: the conversions-topic record's time
OWN_HEADERS = (NOT_BEFORE, DELAYS, EMITTED_AT)


def header_number(record: SourceRecord, name: str) -> int:
    for key, value in header_list(record.headers()):
        if key == name and value is not None:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else 0
    return 0


def _own(record: SourceRecord) -> Headers:
    return [(k, v) for k, v in header_list(record.headers()) if k not in OWN_HEADERS]


def emitted_at(record: SourceRecord) -> int:
    """When the conversions stage wrote it (ms): its timestamp, or what the delay kept."""
    return header_number(record, EMITTED_AT) or record.timestamp()[1]


class ResultWriter:
    def __init__(self, *, sent: str, delayed: str, dead_letter: str, test: bool,
                 limits: TopicLimits | None = None) -> None:
        self._sent = sent
        self._delayed = delayed
        self._dead_letter = dead_letter
        self._test = test
        self._limits = limits or TopicLimits()

    def audit(self, record: SourceRecord, conversion: Conversion, destination: Destination,
              status: Status, reason: str, ref: str, keys: tuple[str, ...],
              now_ms: int) -> Output:
        audit = sent_record(conversion, destination, account_of(conversion, destination).api,
                            status, reason=reason, platform_ref=ref, match_keys=keys,
                            test=self._test, sent_at_ms=now_ms,
                            emitted_at_ms=emitted_at(record) or None)
        return Output(self._sent, sent_key(destination, conversion.conversion_id),
                      orjson.dumps(audit), None)

    def rejection(self, record: SourceRecord, conversion: Conversion,
                  destination: Destination, reason: str, code: str, now_ms: int) -> Output:
        error: RecordError
        if reason == "retries_exhausted":
            error = RetriesExhaustedError(f"{destination} kept failing for conversion "
                                          f"{conversion.conversion_id} (last: {code})", record)
        else:
            error = PlatformRejectedError(f"{destination} rejected conversion "
                                          f"{conversion.conversion_id}: {reason}", record)
        return self.dead_letter(record, error, now_ms, reason, {
            "destination": destination.value, "platform_code": code or reason,
            "audience": conversion.audience})

    def dead_letter(self, record: SourceRecord, error: RecordError, now_ms: int,
                    reason: str | None = None, extra: dict[str, str] | None = None) -> Output:
        letter = CONVERSIONS.letter(record, error, now_ms, self._limits.limit(self._dead_letter),
                                    reason=reason, extra=extra, keep=_own(record))
        return Output(self._dead_letter, letter.key, letter.value, letter.headers)

    def delay(self, record: SourceRecord, not_before_ms: int, delays: int,
              now_ms: int) -> Output:
        """The record for the delay topic (or, too large for it, its dead letter)."""
        headers: Headers = [*_own(record), (NOT_BEFORE, str(not_before_ms).encode()),
                            (DELAYS, str(delays).encode()),
                            (EMITTED_AT, str(emitted_at(record)).encode())]
        refusal = self._limits.refusal(self._delayed, record.key(), record.value(), headers,
                                       record)
        if refusal is not None:
            return self.dead_letter(record, refusal, now_ms)
        return Output(self._delayed, record.key(), record.value(), headers)
