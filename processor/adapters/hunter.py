"""Hunter's Combined Enrichment endpoint, asked for Clearbit-shaped data, as a ``Provider``.

``GET /v2/combined/find?email=...&clearbit_format=true`` answers with Clearbit's
``person``/``company`` objects (inside Hunter's usual ``{"data": ..., "meta": ...}``
envelope; a bare body is accepted too), so the trait mapping and the output stay
exactly as with Clearbit. What differs is Hunter's status vocabulary:

======  ======================================  ==================================
status  Hunter means                            here
======  ======================================  ==================================
401     no valid API key                        fatal: stop with a message
403     rate limit reached (per second/minute)  the pool slows down, records wait
429     usage limit of the plan reached         quota: pause and probe (no dead letter)
451     the person asked to be forgotten       no record (a counted skip)
400     a parameter is invalid                  this email is rejected (dead letter)
======  ======================================  ==================================

The key goes in the ``X-API-KEY`` header, never in the URL (URLs end up in logs).
"""

from __future__ import annotations

from typing import Any

from processor.adapters.clearbit import ClearbitProvider, error_text
from processor.adapters.http import HttpAnswer
from processor.core.clock import Clock
from processor.core.enrichment.answers import Answer, NotFound
from processor.core.errors import (
    ProviderAuthError,
    QuotaExhaustedError,
    RateLimitedError,
)


class HunterProvider(ClearbitProvider):
    name = "hunter"

    def __init__(self, *, base_url: str, api_key: str, timeout: float, max_connections: int,
                 clock: Clock, client: str = "aiohttp", max_answer_bytes: int = 1_048_576,
                 max_rate_limit_wait: float = 300.0) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout,
                         max_connections=max_connections, clock=clock,
                         extra_params={"clearbit_format": "true"},
                         auth_header=("X-API-KEY", api_key), client=client,
                         max_answer_bytes=max_answer_bytes,
                         max_rate_limit_wait=max_rate_limit_wait)

    def _answer(self, response: HttpAnswer) -> Answer:
        status = response.status
        if status == 401:
            raise ProviderAuthError(
                f"hunter refused the API key ({status} {error_text(response.body)}); "
                "check HUNTER_API_KEY")
        if status == 403:
            # No documented Retry-After or reset header: honour them if sent, else back off.
            raise RateLimitedError("hunter rate limit (403)", self._retry_at(response))
        if status == 429:
            raise QuotaExhaustedError("hunter usage limit reached (429)")
        if status == 451:
            return NotFound()
        return super()._answer(response)

    def _unwrap(self, parsed: Any) -> Any:
        if isinstance(parsed, dict) and isinstance(parsed.get("data"), dict):
            return parsed["data"]
        return parsed
