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

Both read an answer the same way: as a stream, decoded, at most ``max_body``
bytes. A larger one (by its Content-Length, or once the decoded bytes pass the
cap, a compression bomb included) is abandoned there and its connection closed,
so a 30 MB answer costs about ``max_body`` of memory; one whose bytes do not
decode (a bad ``Content-Encoding``) is reported as such. Either comes back as an
``HttpAnswer`` with its ``problem`` set, for the provider to judge by the status.
And both bound a request as a whole, from connecting to the last byte, by its
timeout (httpx's own timeouts bound each phase, so an answer fed a byte at a
time would never end); the lookup pool bounds every attempt again with what is
left of its retry deadline.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from processor.core.errors import TransientProviderError

# Content-Encodings the httpx transport decodes, as zlib's wbits (0: nothing to decode).
_WBITS = {"identity": 0, "": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
          "deflate": zlib.MAX_WBITS}
TOO_LARGE = "too_large"
UNDECODABLE = "undecodable"
CHUNK = 64 * 1024


class HttpAnswer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive in both clients
    body: bytes  # empty when there is a problem
    problem: str | None = None  # TOO_LARGE or UNDECODABLE


class HttpTransport(Protocol):
    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer: ...

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """``body`` as is; ``headers`` are added to the transport's own for this request
        (a bearer token that is renewed, the body's content type). Read as ``get``'s."""

    async def aclose(self) -> None: ...


def _timed_out() -> TransientProviderError:
    return TransientProviderError("provider timed out", status="timeout")


def _unreachable(error: BaseException) -> TransientProviderError:
    return TransientProviderError(f"could not reach the provider ({type(error).__name__})",
                                  status="connection_error")


def _declared_too_large(headers: Mapping[str, str], max_body: int) -> bool:
    length = headers.get("content-length", "")
    return length.isdigit() and int(length) > max_body


class AiohttpTransport:
    """aiohttp's client. The session is created on first use, inside the running loop."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 max_connections: int, max_body: int = 1_048_576) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._max_connections = max_connections
        self._max_body = max_body
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
            async with (asyncio.timeout(self._timeout),
                        session.get(self._base_url + path, params=params) as response):
                return await self._read(response)
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
            async with (asyncio.timeout(self._timeout),
                        session.post(self._base_url + path, data=body,
                                     headers=dict(headers)) as response):
                return await self._read(response)
        except TimeoutError:
            raise _timed_out() from None
        except aiohttp.ClientError as error:
            raise _unreachable(error) from None

    async def _read(self, response: Any) -> HttpAnswer:
        import aiohttp  # noqa: PLC0415
        from aiohttp.http_exceptions import ContentEncodingError  # noqa: PLC0415

        status, headers, cap = response.status, response.headers, self._max_body
        if _declared_too_large(headers, cap):
            response.close()  # not read, and the connection not reused
            return HttpAnswer(status, headers, b"", TOO_LARGE)
        body = bytearray()
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                body += chunk
                if len(body) > cap:
                    response.close()
                    return HttpAnswer(status, headers, b"", TOO_LARGE)
        except aiohttp.ClientPayloadError as error:
            # A body cut short is the connection's failure; one that does not decode
            # is the answer's (aiohttp tells them apart only by the cause).
            if isinstance(error.__cause__, ContentEncodingError) or "content-encoding" in str(
                    error).lower():
                return HttpAnswer(status, headers, b"", UNDECODABLE)
            raise
        return HttpAnswer(status, headers, bytes(body))

    async def aclose(self) -> None:
        import aiohttp  # noqa: PLC0415

        if isinstance(self._session, aiohttp.ClientSession):
            await self._session.close()
            # Let the connector's transports finish closing before the loop goes away.
            await asyncio.sleep(0)


class HttpxTransport:
    """httpx's AsyncClient (the design card's choice; see the figures above)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 max_connections: int, max_body: int = 1_048_576) -> None:
        import httpx  # noqa: PLC0415 - only when chosen

        self._timeout = timeout
        self._max_body = max_body

        # httpx logs every request URL at INFO, and the URL carries the email.
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        # Only what _read decodes itself (httpx would add br or zstd when installed).
        self._client = httpx.AsyncClient(
            base_url=base_url, headers={"Accept-Encoding": "gzip, deflate", **headers},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def get(self, path: str, params: Mapping[str, str]) -> HttpAnswer:
        import httpx  # noqa: PLC0415

        try:
            # httpx's timeouts bound each phase (a read, say), not the request.
            async with (asyncio.timeout(self._timeout),
                        self._client.stream("GET", path, params=dict(params)) as response):
                return await self._read(response)
        except (httpx.TimeoutException, TimeoutError):
            raise _timed_out() from None
        except httpx.RequestError as error:
            # TransportError and the few others (too many redirects, say): the exchange
            # failed, whatever this email's answer would have been.
            raise _unreachable(error) from None

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        import httpx  # noqa: PLC0415

        try:
            async with (asyncio.timeout(self._timeout),
                        self._client.stream("POST", path, content=body,
                                            headers=dict(headers)) as response):
                return await self._read(response)
        except (httpx.TimeoutException, TimeoutError):
            raise _timed_out() from None
        except httpx.RequestError as error:
            raise _unreachable(error) from None

    async def _read(self, response: Any) -> HttpAnswer:
        """The body, decoded here rather than by httpx: its decoder inflates whatever
        arrived at once (a 30 kB gzip bomb read in one piece is 30 MB in one go, 107 MB
        of peak memory measured), this one never more than the cap allows."""
        status, headers, cap = response.status_code, response.headers, self._max_body
        if _declared_too_large(headers, cap):
            return HttpAnswer(status, headers, b"", TOO_LARGE)  # closed unread on exit
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in _WBITS:
            return HttpAnswer(status, headers, b"", UNDECODABLE)
        wbits = _WBITS[encoding]
        inflater = zlib.decompressobj(wbits) if wbits else None
        body = bytearray()
        try:
            async for raw in response.aiter_raw(CHUNK):
                if inflater is None:
                    body += raw
                else:
                    pending = raw
                    while pending and len(body) <= cap:
                        body += inflater.decompress(pending, cap + 1 - len(body))
                        pending = inflater.unconsumed_tail
                if len(body) > cap:
                    return HttpAnswer(status, headers, b"", TOO_LARGE)
        except zlib.error:
            return HttpAnswer(status, headers, b"", UNDECODABLE)
        if inflater is not None and not inflater.eof:
            return HttpAnswer(status, headers, b"", UNDECODABLE)  # cut short
        return HttpAnswer(status, headers, bytes(body))

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
