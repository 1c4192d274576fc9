"""Google's conversion APIs over HTTP, behind one client: the Data Manager API
(``POST {base}/v1/events:ingest``, the default) and the Google Ads API
(``POST {base}/{version}/customers/{id}:uploadClickConversions``), both with an OAuth
access token from the refresh-token grant at the token URL.

The token is renewed a minute before it expires, and once more when an API answers 401;
a second 401 is a refusal. Credentials travel in headers and in the token request's form
body only, never in a URL. What an answer means is decided by
``processor.core.conversions.verdicts``; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import orjson

from processor.adapters.http import TRANSPORTS, HttpTransport
from processor.adapters.meta import JSON, decoded, retry_after
from processor.core.clock import Clock
from processor.core.conversions.sending import (
    DATAMANAGER_PATH,
    Account,
    Api,
    Destination,
    ads_body,
    ads_path,
    datamanager_body,
)
from processor.core.conversions.verdicts import (
    Kind,
    Token,
    Verdict,
    google_answer,
    token_answer,
    transport_failure,
)
from processor.core.errors import TransientProviderError

RENEW_BEFORE = 60.0  # seconds before expiry: a token must not expire in flight
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class GoogleOAuth:
    """Access tokens from the refresh-token grant, renewed before they expire."""

    def __init__(self, *, transport: HttpTransport, client_id: str, client_secret: str,
                 refresh_token: str, clock: Clock) -> None:
        self._transport = transport
        self._form = urlencode({"grant_type": "refresh_token", "client_id": client_id,
                                "client_secret": client_secret,
                                "refresh_token": refresh_token}).encode()
        self._clock = clock
        self._token: Token | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, renew: bool = False) -> Token | Verdict:
        """A valid token (a new one with ``renew``), or why there is none."""
        async with self._lock:
            now = self._clock.monotonic()
            if renew or self._token is None or now >= self._expires_at - RENEW_BEFORE:
                try:
                    answer = await self._transport.post("", self._form, FORM)
                except TransientProviderError as error:
                    return transport_failure(error.status)
                found = token_answer(answer.status, decoded(answer))
                if isinstance(found, Verdict):
                    return found
                self._token, self._expires_at = found, now + found.expires_in
            return self._token

    def forget(self, stale: Token) -> None:
        if self._token is stale:
            self._token = None

    async def aclose(self) -> None:
        await self._transport.aclose()


class GoogleClient:
    """Implements ``processor.stages.sender.ports.PlatformClient`` for both Google APIs."""

    destination = Destination.GOOGLE

    def __init__(self, *, oauth: GoogleOAuth, datamanager: HttpTransport, ads: HttpTransport,
                 ads_version: str, developer_token: str) -> None:
        self._oauth = oauth
        self._datamanager = datamanager
        self._ads = ads
        self._ads_version = ads_version
        self._developer_token = developer_token

    @classmethod
    def over_http(cls, *, token_url: str, datamanager_url: str, ads_url: str, ads_version: str,
                  client_id: str, client_secret: str, refresh_token: str,
                  developer_token: str, timeout: float, max_connections: int, clock: Clock,
                  client: str = "aiohttp") -> GoogleClient:
        def transport(url: str) -> HttpTransport:
            return TRANSPORTS[client](url, {}, timeout, max_connections)

        oauth = GoogleOAuth(transport=transport(token_url), client_id=client_id,
                            client_secret=client_secret, refresh_token=refresh_token,
                            clock=clock)
        return cls(oauth=oauth, datamanager=transport(datamanager_url),
                   ads=transport(ads_url), ads_version=ads_version,
                   developer_token=developer_token)

    async def send(self, account: Account, payloads: list[dict[str, Any]],
                   test: bool) -> Verdict:
        verdict = await self._send(account, payloads, test, renew=False)
        if verdict.kind is Kind.EXPIRED:
            verdict = await self._send(account, payloads, test, renew=True)
            if verdict.kind is Kind.EXPIRED:  # a fresh token refused too: a refusal
                return Verdict(Kind.REFUSED, verdict.status, verdict.code, verdict.ref,
                               message=verdict.message)
        return verdict

    async def _send(self, account: Account, payloads: list[dict[str, Any]], test: bool,
                    renew: bool) -> Verdict:
        token = await self._oauth.token(renew)
        if isinstance(token, Verdict):
            return token
        headers = {**JSON, "Authorization": f"Bearer {token.access_token}"}
        if account.api is Api.ADS:
            transport, path = self._ads, ads_path(self._ads_version, account)
            body = ads_body(payloads, test)
            headers["developer-token"] = self._developer_token
            if account.login:
                headers["login-customer-id"] = account.login
        else:
            transport, path = self._datamanager, DATAMANAGER_PATH
            body = datamanager_body(account, payloads, test)
        try:
            answer = await transport.post(path, orjson.dumps(body), headers)
        except TransientProviderError as error:
            return transport_failure(error.status)
        verdict = google_answer(answer.status, decoded(answer), len(payloads),
                                retry_after(answer.headers))
        if verdict.kind is Kind.EXPIRED:
            self._oauth.forget(token)
        return verdict

    async def aclose(self) -> None:
        for closing in (self._oauth, self._datamanager, self._ads):
            await closing.aclose()
