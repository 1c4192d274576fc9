"""Clearbit's answers to the provider's vocabulary, over the in-memory transport and on
fake time (the same answers over real HTTP: tests/integration/test_providers_http.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson
import pytest

from processor.adapters.clearbit import ClearbitProvider
from processor.adapters.http import HttpAnswer, MemoryTransport
from processor.core.enrichment.answers import Answer, Found, NotFound, Queued, Rejected
from processor.core.errors import (
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientProviderError,
)
from tests.fakes import FakeClock

BODY = orjson.dumps({"person": {"name": {"fullName": "Ada Lovelace"}}, "company": None})


def provider(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
             clock: FakeClock | None = None) -> tuple[ClearbitProvider, MemoryTransport]:
    def answer(_path: str, _params: Mapping[str, str]) -> HttpAnswer:
        return HttpAnswer(status, {k.lower(): v for k, v in (headers or {}).items()}, body)

    transport = MemoryTransport(answer)
    return ClearbitProvider(base_url="http://unused", api_key="sk_test", timeout=1,
                            max_connections=1, clock=clock or FakeClock(),
                            transport=transport), transport


def find(p: ClearbitProvider, email: str = "ada@initech.example") -> Answer:
    return asyncio.run(p.find(email))


def test_found_asks_for_the_email_on_the_combined_path() -> None:
    p, transport = provider(200, BODY)
    answer = find(p)
    assert isinstance(answer, Found)
    assert answer.person == {"name": {"fullName": "Ada Lovelace"}}
    assert transport.requests == [("/v2/combined/find", {"email": "ada@initech.example"})]


@pytest.mark.parametrize(("status", "body", "expected"), [
    (202, b"", Queued()),
    (404, b'{"error": {"type": "unknown_record"}}', NotFound()),
    (200, b'{"person": null, "company": null}', NotFound()),
])
def test_answers_without_a_record(status: int, body: bytes, expected: Answer) -> None:
    assert find(provider(status, body)[0]) == expected


def test_422_is_a_rejection_with_the_reason() -> None:
    answer = find(provider(422, b'{"error": {"type": "email_invalid", "message": "bad"}}')[0])
    assert isinstance(answer, Rejected)
    assert answer.message.startswith("422")


@pytest.mark.parametrize(("status", "error"), [
    (401, ProviderAuthError), (403, ProviderAuthError), (402, QuotaExhaustedError),
    (500, TransientProviderError), (503, TransientProviderError),
    (408, TransientProviderError)])
def test_failures_raise_their_kind(status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        find(provider(status, b"{}")[0])


def test_a_429_says_when_to_come_back_on_the_injected_clock() -> None:
    clock = FakeClock()
    p, _ = provider(429, b"{}", {"Retry-After": "7"}, clock)
    with pytest.raises(RateLimitedError) as raised:
        find(p)
    assert raised.value.retry_at == clock.monotonic() + 7
