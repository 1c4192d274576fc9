"""Both HTTP transports give the same answers for every status, against the real server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from processor.adapters.clearbit import ClearbitProvider
from processor.adapters.hunter import HunterProvider
from processor.core.clock import SystemClock
from processor.core.enrichment.answers import Found, NotFound, Queued, Rejected
from processor.core.errors import (
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientProviderError,
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
