"""Both HTTP transports give the same answers for every status, against the real server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from processor.adapters.clearbit import ClearbitProvider, retry_at
from processor.adapters.hunter import HunterProvider
from processor.core.clock import SystemClock
from processor.core.enrichment.answers import Found, NotFound, Queued, Rejected
from processor.core.errors import (
    AnswerTooLargeError,
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientProviderError,
    UnusableAnswerError,
)
from processor.devkit.clearbit_server import ClearbitServer

KEY = "sk_test_local"
CLIENTS = ["aiohttp", "httpx"]


@pytest.fixture(scope="module")
def server() -> Iterator[ClearbitServer]:
    with ClearbitServer(key=KEY) as running:
        yield running


def ask(provider: Any, *emails: str) -> list[Any]:
    async def run() -> list[Any]:
        answers: list[Any] = []
        try:
            for email in emails:
                try:
                    answers.append(await provider.find(email))
                except Exception as error:  # noqa: BLE001 - the answer under test
                    answers.append(error)
        finally:
            await provider.aclose()
        return answers
    return asyncio.run(run())


def clearbit(url: str, client: str, key: str = KEY, timeout: float = 5.0) -> ClearbitProvider:
    return ClearbitProvider(base_url=url, api_key=key, timeout=timeout, max_connections=4,
                            clock=SystemClock(), client=client)


@pytest.mark.parametrize("client", CLIENTS)
def test_every_status_has_its_answer(server: ClearbitServer, client: str) -> None:
    server.reset()
    server.set_rule("limited@initech.example", 429, headers={"Retry-After": "7"})
    server.set_rule("broke@initech.example", 402)
    answers = ask(clearbit(server.url, client), "ada@initech.example",
                  "notfound.x@initech.example", "invalid.x@initech.example",
                  "queued.x@initech.example", "error.x@initech.example",
                  "nobody.x@initech.example", "limited@initech.example",
                  "broke@initech.example")
    kinds = [type(a) for a in answers]
    assert kinds == [Found, NotFound, Rejected, Queued, TransientProviderError, NotFound,
                     RateLimitedError, QuotaExhaustedError]
    assert answers[0].person["name"]["fullName"]
    assert answers[4].status == "500"
    assert answers[6].retry_at is not None


@pytest.mark.parametrize("client", CLIENTS)
def test_wrong_key_is_fatal_and_never_quoted(server: ClearbitServer, client: str) -> None:
    (answer,) = ask(clearbit(server.url, client, key="sk_wrong_secret"), "ada@initech.example")
    assert isinstance(answer, ProviderAuthError)
    assert "sk_wrong" not in str(answer)


@pytest.mark.parametrize("client", CLIENTS)
def test_timeouts_and_refused_connections_are_transient_and_say_no_email(
        server: ClearbitServer, client: str) -> None:
    server.reset()
    server.set_rule("sleepy@initech.example", delay_ms=2000)
    (slow,) = ask(clearbit(server.url, client, timeout=0.3), "sleepy@initech.example")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (refused,) = ask(clearbit(f"http://127.0.0.1:{port}", client), "ada@initech.example")
    assert isinstance(slow, TransientProviderError)
    assert slow.status == "timeout"
    assert isinstance(refused, TransientProviderError)
    assert refused.status == "connection_error"
    assert "initech" not in str(slow) + str(refused)


@pytest.mark.parametrize("client", CLIENTS)
def test_hunter_vocabulary(client: str) -> None:
    with ClearbitServer(key="hunter-key", flavor="hunter") as hunter:
        hunter.set_rule("slowdown@initech.example", 403)
        hunter.set_rule("spent@initech.example", 402)  # Hunter answers it as 429
        hunter.set_rule("forget@initech.example", 451)
        provider = HunterProvider(base_url=hunter.url, api_key="hunter-key", timeout=5,
                                  max_connections=2, clock=SystemClock(), client=client)
        answers = ask(provider, "ada@initech.example", "slowdown@initech.example",
                      "spent@initech.example", "forget@initech.example",
                      "invalid.x@initech.example")
    assert [type(a) for a in answers] == [Found, RateLimitedError, QuotaExhaustedError,
                                          NotFound, Rejected]
    assert isinstance(answers[0], Found)
    assert answers[0].company["name"]


@pytest.mark.parametrize("client", CLIENTS)
def test_answers_over_the_cap_are_refused_however_they_come(server: ClearbitServer,
                                                            client: str) -> None:
    server.reset()
    server.set_rule("declared@initech.example", 200, size=300_000)
    server.set_rule("streamed@initech.example", 200, size=300_000, chunked=True)
    server.set_rule("bomb@initech.example", 200, size=30_000_000, encoding="gzip")
    server.set_rule("under@initech.example", 200, size=90_000, encoding="gzip")
    provider = ClearbitProvider(base_url=server.url, api_key=KEY, timeout=10,
                                max_connections=2, clock=SystemClock(), client=client,
                                max_answer_bytes=100_000)
    answers = ask(provider, "declared@initech.example", "streamed@initech.example",
                  "bomb@initech.example", "under@initech.example", "ada@initech.example")
    assert [type(a) for a in answers[:3]] == [AnswerTooLargeError] * 3
    assert answers[0].reason == "answer_too_large"
    assert "100000 bytes" in answers[0].message
    assert [type(a) for a in answers[3:]] == [Found, Found]  # the connection still serves
    assert len(answers[3].person["padding"]) > 80_000


@pytest.mark.parametrize("client", CLIENTS)
def test_malformed_200s_are_unusable_answers_not_provider_failures(server: ClearbitServer,
                                                                   client: str) -> None:
    server.reset()
    server.set_rule("badgzip@initech.example", 200, encoding="bad-gzip")
    server.set_rule("html@initech.example", 200, body="<html>maintenance</html>")
    server.set_rule("listed@initech.example", 200, body={"person": [1, 2], "company": None})
    server.set_rule("texted@initech.example", 200, body={"person": None, "company": "Initech"})
    server.set_rule("array@initech.example", 200, body=[{"person": {}}])
    answers = ask(clearbit(server.url, client), "badgzip@initech.example",
                  "html@initech.example", "listed@initech.example", "texted@initech.example",
                  "array@initech.example", "ada@initech.example")
    assert [type(a) for a in answers] == [UnusableAnswerError] * 5 + [Found]
    assert {a.reason for a in answers[:5]} == {"bad_answer"}
    assert "Content-Encoding" in answers[0].message
    assert "person that is a list" in answers[2].message
    assert "initech" not in " ".join(a.message for a in answers[:5])


@pytest.mark.parametrize("client", CLIENTS)
def test_retry_after_is_capped_and_unreadable_ones_are_ignored(server: ClearbitServer,
                                                               client: str) -> None:
    server.reset()
    server.set_rule("forever@initech.example", 429, headers={"Retry-After": "999999999"})
    server.set_rule("dated@initech.example", 429,
                    headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"})
    server.set_rule("garbled@initech.example", 429, headers={"Retry-After": "soon, maybe"})
    provider = ClearbitProvider(base_url=server.url, api_key=KEY, timeout=5, max_connections=2,
                                clock=SystemClock(), client=client, max_rate_limit_wait=30)
    now = time.monotonic()
    forever, dated, garbled = ask(provider, "forever@initech.example", "dated@initech.example",
                                  "garbled@initech.example")
    assert isinstance(forever, RateLimitedError)
    assert now + 29 <= (forever.retry_at or 0) <= time.monotonic() + 30
    assert now + 29 <= (dated.retry_at or 0) <= time.monotonic() + 30
    assert garbled.retry_at is None  # the pool backs off instead


def test_retry_at_reads_both_headers_and_caps_both() -> None:
    clock = SystemClock()
    now = clock.monotonic()
    assert retry_at({"retry-after": "7"}, clock, 60) == pytest.approx(now + 7, abs=0.5)
    assert retry_at({"retry-after": "-5"}, clock, 60) == pytest.approx(now, abs=0.5)
    assert retry_at({"retry-after": "nan"}, clock, 60) is None
    assert retry_at({"x-ratelimit-reset": str(int(clock.time()) + 10**9)}, clock,
                    60) == pytest.approx(now + 60, abs=0.5)
    assert retry_at({"x-ratelimit-reset": "3"}, clock, 60) == pytest.approx(now + 3, abs=0.5)
    assert retry_at({}, clock, 60) is None


@pytest.mark.parametrize("client", CLIENTS)
def test_a_drip_fed_answer_times_out_as_a_whole(server: ClearbitServer, client: str) -> None:
    server.reset()
    # A byte every 0.1 s keeps every read short; the request as a whole is what must end.
    server.set_rule("drip@initech.example", 200, body={"person": None, "company": None},
                    drip_ms=100)
    started = time.monotonic()
    (answer,) = ask(clearbit(server.url, client, timeout=0.5), "drip@initech.example")
    assert isinstance(answer, TransientProviderError)
    assert answer.status == "timeout"
    assert time.monotonic() - started < 2
