"""The HTTP client under the providers: aiohttp by default, httpx on request.

Why two: measured here on the local server (2 cores, loopback), one GET with a
5 kB JSON answer costs the client this much CPU:

=========================  ==================  =====================
concurrency / latency      httpx 0.28          aiohttp 3.14
=========================  ==================  =====================
8 in flight, 50 ms         1,500 us/request    270 us/request
32 in flight, 20 ms        5,200 us/request    200 us/request
=========================  ==================  =====================

httpx's pool costs grow with the number of connections (its pool scans every
connection on every request), so at 32 in flight it saturated a core at about
200 lookups/s against an ideal of 1,600; aiohttp reached 1,312/s. The design
card names httpx, so it stays available (``PROCESSOR_HTTP_CLIENT=httpx``) behind
the same seam; the default follows the figures.

Transport failures are translated here into ``TransientProviderError`` with
our own message: library exception texts can carry the request URL, and the
URL carries the email.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from processor.core.errors import TransientProviderError


class HttpAnswer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive in both clients
    body: bytes


class HttpTransport(Protocol):
    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer: ...

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """``body`` as is; ``headers`` are added to the transport's own for this request
        (a bearer token that is renewed, the body's content type)."""

    async def aclose(self) -> None: ...


def _timed_out() -> TransientProviderError:
    return TransientProviderError("provider timed out", status="timeout")


def _unreachable(error: BaseException) -> TransientProviderError:
    return TransientProviderError(f"could not reach the provider ({type(error).__name__})",
                                  status="connection_error")


class AiohttpTransport:
    """aiohttp's client. The session is created on first use, inside the running loop."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 max_connections: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._max_connections = max_connections
        self._session: object | None = None

    def _open(self) -> object:
        import aiohttp  # noqa: PLC0415 - imported where the loop runs

        return aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=self._max_connections,
                                           limit_per_host=self._max_connections),
            raise_for_status=False,
        )

    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer:
        import aiohttp  # noqa: PLC0415

        if self._session is None:
            self._session = self._open()
        session = self._session
        assert isinstance(session, aiohttp.ClientSession)  # noqa: S101 - set just above
        try:
            async with session.get(self._base_url + path, params=params) as response:
                return HttpAnswer(response.status, response.headers, await response.read())
        except TimeoutError:
            raise _timed_out() from None
        except aiohttp.ClientError as error:
            raise _unreachable(error) from None

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        import aiohttp  # noqa: PLC0415

        if self._session is None:
            self._session = self._open()
        session = self._session
        assert isinstance(session, aiohttp.ClientSession)  # noqa: S101 - set just above
        try:
            async with session.post(self._base_url + path, data=body,
                                    headers=dict(headers)) as response:
                return HttpAnswer(response.status, response.headers, await response.read())
        except TimeoutError:
            raise _timed_out() from None
        except aiohttp.ClientError as error:
            raise _unreachable(error) from None

    async def aclose(self) -> None:
        import aiohttp  # noqa: PLC0415

        if isinstance(self._session, aiohttp.ClientSession):
            await self._session.close()
            # Let the connector's transports finish closing before the loop goes away.
            await asyncio.sleep(0)


class HttpxTransport:
    """httpx's AsyncClient (the design card's choice; see the figures above)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 max_connections: int) -> None:
        import httpx  # noqa: PLC0415 - only when chosen

        # httpx logs every request URL at INFO, and the URL carries the email.
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=dict(headers), timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer:
        import httpx  # noqa: PLC0415

        try:
            response = await self._client.get(path, params=dict(params))
        except httpx.TimeoutException:
            raise _timed_out() from None
        except httpx.TransportError as error:
            raise _unreachable(error) from None
        return HttpAnswer(response.status_code, response.headers, response.content)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        import httpx  # noqa: PLC0415

        try:
            response = await self._client.post(path, content=body, headers=dict(headers))
        except httpx.TimeoutException:
            raise _timed_out() from None
        except httpx.TransportError as error:
            raise _unreachable(error) from None
        return HttpAnswer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class MemoryTransport:
    """Answers from a function, with no socket: the unit tests' transport (as httpx's
    ``MockTransport``). ``answer`` gets a GET's path and query parameters, ``posted`` a
    POST's path, body and headers."""

    def __init__(self, answer: Callable[[str, Mapping[str, str]], HttpAnswer] | None = None,
                 posted: Callable[[str, bytes, Mapping[str, str]], HttpAnswer] | None = None,
                 ) -> None:
        self._answer = answer
        self._posted = posted
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer:
        self.requests.append((path, dict(params)))
        if self._answer is None:
            raise AssertionError(f"no GET expected: {path}")
        return self._answer(path, params)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        self.posts.append((path, body, dict(headers)))
        if self._posted is None:
            raise AssertionError(f"no POST expected: {path}")
        return self._posted(path, body, headers)

    async def aclose(self) -> None:
        pass


TRANSPORTS: dict[str, type[AiohttpTransport] | type[HttpxTransport]] = {
    "aiohttp": AiohttpTransport, "httpx": HttpxTransport}
