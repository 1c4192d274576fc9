"""Clearbit's Combined API (``/v2/combined/find``) as a ``Provider``.

Every status code is translated here into a provider answer or a
``processor.core.errors`` type; the HTTP client itself sits behind
``processor.adapters.http``. Error texts never carry the request URL (it holds
the email) nor the key.

A 200 must be a JSON object whose ``person`` and ``company`` are objects or null;
anything else (a body over the cap, one that does not decode, is not JSON or has
another shape) is this email's ``UnusableAnswerError``, never a provider failure.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from typing import Any

import orjson

from processor.adapters.http import TOO_LARGE, TRANSPORTS, HttpAnswer, HttpTransport
from processor.core.clock import Clock
from processor.core.enrichment.answers import Answer, Found, NotFound, Queued, Rejected
from processor.core.errors import (
    AnswerTooLargeError,
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientProviderError,
    UnusableAnswerError,
)
from processor.core.redact import redact

COMBINED_PATH = "/v2/combined/find"
USER_AGENT = "clearbit-enrichment-stage/0.1 (+kafka)"


def error_text(body: bytes) -> str:
    """``type: message`` from an error body, in any of the shapes providers use:
    ``{"error": {...}}``, ``{"error": [{...}]}``, ``{"error": "text"}`` (Clearbit) or
    ``{"errors": [{"id", "details"}]}`` (Hunter). Never raises."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    error = parsed.get("error", parsed.get("errors"))
    if isinstance(error, list):
        error = error[0] if error else None
    if isinstance(error, dict):
        kind = error.get("type", error.get("id"))
        message = error.get("message", error.get("details"))
        return redact(": ".join(str(p) for p in (kind, message) if p))
    return redact(str(error)) if error else ""


def retry_at(headers: Mapping[str, str], clock: Clock, max_wait: float) -> float | None:
    """When a 429 says we may try again, on the monotonic clock, ``max_wait`` from now at
    most (whatever a header says, a hostile or broken one included).

    ``Retry-After`` (seconds or an HTTP date) first, then ``x-ratelimit-reset``
    (epoch seconds; small values are taken as seconds from now). A value neither
    can read is as if it were not there.
    """
    now_mono, now_wall = clock.monotonic(), clock.time()
    wait = _retry_after(headers.get("retry-after", ""), now_wall)
    if wait is None:
        reset = _number(headers.get("x-ratelimit-reset", ""))
        if reset is not None:
            wait = reset - now_wall if reset > 1e9 else reset
    if wait is None:
        return None
    return now_mono + min(max(0.0, wait), max_wait)


def _retry_after(value: str, now_wall: float) -> float | None:
    value = value.strip()
    seconds = _number(value)
    if seconds is not None or "," not in value:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.timestamp() - now_wall


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class ClearbitProvider:
    """The Combined endpoint: person and company behind an email, in one call."""

    name = "clearbit"

    def __init__(self, *, base_url: str, api_key: str, timeout: float, max_connections: int,
                 clock: Clock, extra_params: Mapping[str, str] | None = None,
                 path: str = COMBINED_PATH, auth_header: tuple[str, str] | None = None,
                 client: str = "aiohttp", transport: HttpTransport | None = None,
                 max_answer_bytes: int = 1_048_576, max_rate_limit_wait: float = 300.0) -> None:
        self._clock = clock
        self._max_answer_bytes = max_answer_bytes
        self._max_rate_limit_wait = max_rate_limit_wait
        self._path = path
        self._params = dict(extra_params or {})
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        name, value = auth_header or ("Authorization", f"Bearer {api_key}")
        headers[name] = value
        self._http: HttpTransport = transport or TRANSPORTS[client](
            base_url, headers, timeout, max_connections, max_answer_bytes)

    async def find(self, email: str) -> Answer:
        return self._answer(await self._http.get(self._path, {**self._params, "email": email}))

    def _answer(self, response: HttpAnswer) -> Answer:
        status = response.status
        if status in (200, 201):
            return self._found(response)
        if status == 202:
            return Queued()
        if status == 404:
            return NotFound()
        if status in (401, 403):
            raise ProviderAuthError(
                f"{self.name} refused the API key ({status} {error_text(response.body)}); "
                "check the key variable: enrichment needs the secret key")
        if status == 402:
            raise QuotaExhaustedError(f"{self.name} quota exhausted (402)")
        if status == 429:
            raise RateLimitedError(f"{self.name} rate limit (429)", self._retry_at(response))
        if status >= 500 or status == 408:
            raise TransientProviderError(f"{self.name} answered {status}", status=str(status))
        # 422 and any other 4xx: the provider will not take this email, whatever we retry.
        detail = error_text(response.body)
        return Rejected(f"{status} {detail}".strip())

    def _retry_at(self, response: HttpAnswer) -> float | None:
        return retry_at(response.headers, self._clock, self._max_rate_limit_wait)

    def _found(self, response: HttpAnswer) -> Answer:
        if response.problem == TOO_LARGE:
            raise AnswerTooLargeError(f"{self.name} answered with more than "
                                      f"{self._max_answer_bytes} bytes")
        if response.problem is not None:
            raise UnusableAnswerError(f"{self.name} sent a body that does not decode "
                                      "(its Content-Encoding)")
        try:
            parsed: Any = self._unwrap(orjson.loads(response.body))
        except orjson.JSONDecodeError:
            raise UnusableAnswerError(f"{self.name} sent a body that is not JSON") from None
        if not isinstance(parsed, dict):
            raise UnusableAnswerError(f"{self.name} sent a body that is not an object")
        person, company = parsed.get("person"), parsed.get("company")
        for part, value in (("person", person), ("company", company)):
            if value is not None and not isinstance(value, dict):
                raise UnusableAnswerError(f"{self.name} sent a {part} that is a "
                                          f"{type(value).__name__}, not an object")
        if person is None and company is None:
            return NotFound()
        return Found(person, company)

    def _unwrap(self, parsed: Any) -> Any:
        """The combined body itself, out of whatever envelope the provider puts it in."""
        return parsed

    async def aclose(self) -> None:
        await self._http.aclose()
