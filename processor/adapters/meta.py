"""Meta's Conversions API over HTTP: ``POST {base}/{version}/{pixel_id}/events``.

The access token goes in the ``Authorization`` header, never in the URL (URLs end up in
proxies' and servers' logs). What an answer means is decided by
``processor.core.conversions.verdicts.meta_answer``; this module only moves bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from processor.adapters.http import TRANSPORTS, HttpAnswer, HttpTransport
from processor.core.conversions.sending import Account, Destination, meta_body, meta_path
from processor.core.conversions.verdicts import Verdict, meta_answer, transport_failure
from processor.core.errors import TransientProviderError

JSON = {"Content-Type": "application/json"}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by these APIs)."""
    value = headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def decoded(answer: HttpAnswer) -> Any:
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None


class MetaClient:
    """Implements ``processor.stages.sender.ports.PlatformClient`` for Meta."""

    destination = Destination.META

    def __init__(self, *, base_url: str, version: str, access_token: str,
                 test_event_code: str, timeout: float, max_connections: int,
                 client: str = "aiohttp", transport: HttpTransport | None = None) -> None:
        self._version = version
        self._test_event_code = test_event_code
        self._transport = transport or TRANSPORTS[client](
            base_url, {"Authorization": f"Bearer {access_token}"}, timeout, max_connections)

    async def send(self, account: Account, payloads: list[dict[str, Any]],
                   test: bool) -> Verdict:
        body = orjson.dumps(meta_body(payloads, self._test_event_code if test else ""))
        try:
            answer = await self._transport.post(meta_path(self._version, account), body, JSON)
        except TransientProviderError as error:
            return transport_failure(error.status)
        return meta_answer(answer.status, decoded(answer), len(payloads),
                           retry_after(answer.headers))

    async def aclose(self) -> None:
        await self._transport.aclose()
