"""Clearbit's Combined API (``/v2/combined/find``) as a ``Provider``.

Every status code is translated here into a provider answer or a
``processor.core.errors`` type; the HTTP client itself sits behind
``processor.adapters.http``. Error texts never carry the request URL (it holds
the email) nor the key.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any

import orjson

from processor.adapters.http import TRANSPORTS, HttpAnswer, HttpTransport
from processor.core.clock import Clock
from processor.core.enrichment.answers import Answer, Found, NotFound, Queued, Rejected
from processor.core.errors import (
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientProviderError,
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


def retry_at(headers: Mapping[str, str], clock: Clock) -> float | None:
    """When a 429 says we may try again, on the monotonic clock.

    ``Retry-After`` (seconds or an HTTP date) first, then ``x-ratelimit-reset``
    (epoch seconds; small values are taken as seconds from now).
    """
    now_mono, now_wall = clock.monotonic(), clock.time()
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return now_mono + int(value)
        parsed = email.utils.parsedate_to_datetime(value) if "," in value else None
        if parsed is not None:
            return now_mono + max(0.0, parsed.timestamp() - now_wall)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        wait = seconds - now_wall if seconds > 1e9 else seconds
        return now_mono + min(max(0.0, wait), 3600.0)
    return None


class ClearbitProvider:
    """The Combined endpoint: person and company behind an email, in one call."""

    name = "clearbit"

    def __init__(self, *, base_url: str, api_key: str, timeout: float, max_connections: int,
                 clock: Clock, extra_params: Mapping[str, str] | None = None,
                 path: str = COMBINED_PATH, auth_header: tuple[str, str] | None = None,
                 client: str = "aiohttp", transport: HttpTransport | None = None) -> None:
        self._clock = clock
        self._path = path
        self._params = dict(extra_params or {})
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        name, value = auth_header or ("Authorization", f"Bearer {api_key}")
        headers[name] = value
        self._http: HttpTransport = transport or TRANSPORTS[client](base_url, headers, timeout,
                                                                    max_connections)

    async def find(self, email: str) -> Answer:
        return self._answer(await self._http.get(self._path, {**self._params, "email": email}))

    def _answer(self, response: HttpAnswer) -> Answer:
        status = response.status
        if status in (200, 201):
            return self._found(response.body)
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
            raise RateLimitedError(f"{self.name} rate limit (429)",
                                   retry_at(response.headers, self._clock))
        if status >= 500 or status == 408:
            raise TransientProviderError(f"{self.name} answered {status}", status=str(status))
        # 422 and any other 4xx: the provider will not take this email, whatever we retry.
        detail = error_text(response.body)
        return Rejected(f"{status} {detail}".strip())

    def _found(self, body: bytes) -> Answer:
        try:
            parsed: Any = self._unwrap(orjson.loads(body))
        except orjson.JSONDecodeError:
            raise TransientProviderError(f"{self.name} sent a body that is not JSON",
                                         status="bad_body") from None
        if not isinstance(parsed, dict):
            raise TransientProviderError(f"{self.name} sent a body that is not an object",
                                         status="bad_body")
        person, company = parsed.get("person"), parsed.get("company")
        if person is None and company is None:
            return NotFound()
        return Found(person, company)

    def _unwrap(self, parsed: Any) -> Any:
        """The combined body itself, out of whatever envelope the provider puts it in."""
        return parsed

    async def aclose(self) -> None:
        await self._http.aclose()
