"""A Google-compatible server (aiohttp) for local runs and tests: the OAuth token endpoint,
the Data Manager API's ``events:ingest`` and ``requestStatus:retrieve``, and the Google Ads
API's ``uploadClickConversions``, on one port. Nothing here calls Google. The sending stage
talks to it through ``GOOGLE_TOKEN_URL`` (``{url}/token``), ``GOOGLE_DATAMANAGER_BASE_URL``
and ``GOOGLE_ADS_BASE_URL`` (both ``{url}``) exactly as to Google's hosts.

``POST /token`` takes the refresh-token grant as a form (``grant_type=refresh_token``,
``client_id``, ``client_secret``, ``refresh_token``; the client may also come as HTTP Basic)
and answers ``{"access_token", "expires_in", "scope", "token_type": "Bearer"}``. As Google
does: an unknown client or a wrong secret is 401 ``invalid_client``, a wrong refresh token
400 ``invalid_grant``, a missing field 400 ``invalid_request``, another grant 400
``unsupported_grant_type``. Tokens last ``token_lifetime`` seconds of the server's clock, and
only tokens it issued (and has not revoked) are accepted as ``Authorization: Bearer``;
anything else is the front end's 401 ``UNAUTHENTICATED``.

The Data Manager API (``POST /v1/events:ingest``, ``GET /v1/requestStatus:retrieve``): see
``processor.devkit.google_datamanager``; the Google Ads API: see ``processor.devkit.google_ads``.

Scripted faults render in the API's shape: a Data Manager or Ads error with ``reason``
(``RESOURCE_EXHAUSTED`` 429, ``PERMISSION_DENIED`` / ``CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_
FEATURE`` 403, ``UNAUTHENTICATED`` 401, ``INTERNAL_ERROR`` 500, ...; the status follows the
reason and the reason the status when only one is given), an OAuth error on ``/token``.
API names, for request numbers, ``api`` filters and ``rate_limits``: ``token``,
``datamanager``, ``request_status``, ``ads``. The platform's own knobs in ``POST /_script``:
``client_id``, ``client_secret``, ``refresh_token``, ``developer_token``,
``token_lifetime_seconds``, ``strict_clicks``, ``clicks`` ([{"click_id", "click_time"}],
epoch seconds or RFC 3339) and ``revoke_tokens``. ``GET /_events`` takes ``api``.
Control API: see ``processor.devkit.api_double``.

Command line (prints the base URL when ready; SIGTERM/SIGINT stop it)::

    python -m processor.devkit.google_server --port 8082 --rate-limit datamanager=300
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from processor.devkit.api_double import (
    Call,
    DoubleSettings,
    Fault,
    Reply,
    json_reply,
    scripted_reply,
)
from processor.devkit.api_double_runner import (
    DoubleServer,
    command_main,
)
from processor.devkit.google_ads import ClickUploads
from processor.devkit.google_datamanager import EventIngestion, rfc3339
from processor.devkit.google_errors import (
    Rejected,
    RequestFault,
    ads_request_error,
    auth_error,
    datamanager_error,
    fault_status_and_reason,
)

# The local fake's credentials: no secrets.
DEFAULT_CLIENT_ID = "local-client.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "local-client-secret"  # noqa: S105
DEFAULT_REFRESH_TOKEN = "local-refresh-token"  # noqa: S105
DEFAULT_DEVELOPER_TOKEN = "local-developer-token"  # noqa: S105
DEFAULT_TOKEN_LIFETIME = 3599
# Data Manager's own limit per Cloud project: ``rate_limits={"datamanager": ...}`` to have it.
DATAMANAGER_RATE_LIMIT = 300
SCOPES = "https://www.googleapis.com/auth/datamanager https://www.googleapis.com/auth/adwords"
ADS_VERSION = re.compile(r"v\d+")


@dataclasses.dataclass(frozen=True)
class GoogleSettings:
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    refresh_token: str = DEFAULT_REFRESH_TOKEN
    developer_token: str = DEFAULT_DEVELOPER_TOKEN
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME
    strict_clicks: bool = False

    def __post_init__(self) -> None:
        credentials = (self.client_id, self.client_secret, self.refresh_token,
                       self.developer_token)
        if not all(isinstance(c, str) and c for c in credentials) or not (
                isinstance(self.token_lifetime, int | float) and self.token_lifetime > 0):
            raise ValueError("credentials must be non-empty strings, token_lifetime > 0")


class GooglePlatform:
    """The token endpoint, Data Manager and the Google Ads upload on one server."""

    name = "Google"
    routes = (("POST", "/token", "token"),
              ("POST", "/v1/events:ingest", "datamanager"),
              ("GET", "/v1/requestStatus:retrieve", "request_status"),
              ("POST", "/{version}/customers/{cid}:uploadClickConversions", "ads"))
    throttle = Fault(status=429, reason="RESOURCE_EXHAUSTED")

    def __init__(self, settings: GoogleSettings) -> None:
        self.start_settings = self.settings = settings
        self.uploads = ClickUploads()
        self._tokens: dict[str, float] = {}  # access token: expiry (server clock)
        self.ingestion = EventIngestion()

    def reset(self) -> None:
        self.settings = self.start_settings
        self.uploads.reset(self.settings.strict_clicks)
        self._tokens.clear()
        self.ingestion.reset()

    def config(self) -> dict[str, Any]:
        return {"token_lifetime_seconds": self.settings.token_lifetime,
                "strict_clicks": self.uploads.strict, "clicks": dict(self.uploads.clicks),
                "tokens_issued": len(self._tokens),
                "events": len(self.ingestion.events) + len(self.uploads.events)}

    def configure(self, knobs: dict[str, Any]) -> None:
        names = {"client_id": "client_id", "client_secret": "client_secret",
                 "refresh_token": "refresh_token", "developer_token": "developer_token",
                 "token_lifetime_seconds": "token_lifetime"}
        changes = {field: knobs.pop(name) for name, field in names.items() if name in knobs}
        if changes:
            self.settings = dataclasses.replace(self.settings, **changes)
        if "strict_clicks" in knobs:
            strict = knobs.pop("strict_clicks")
            if not isinstance(strict, bool):
                raise ValueError("strict_clicks must be true or false")
            self.uploads.strict = strict
        for item in knobs.pop("clicks", []):
            click = item if isinstance(item, dict) else {}
            when = click.get("click_time")
            seconds = rfc3339(when) if isinstance(when, str) else when
            if not isinstance(click.get("click_id"), str) or not isinstance(seconds, int | float):
                raise ValueError("a click is {click_id, click_time (epoch s or RFC 3339)}")
            self.uploads.clicks[click["click_id"]] = float(seconds)
        if knobs.pop("revoke_tokens", False):
            self._tokens.clear()

    def events(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        api = query.get("api")
        merged = sorted([*self.ingestion.events, *self.uploads.events], key=lambda e: e["request"])
        return [event for event in merged if api is None or event["api"] == api]

    def issue_token(self, now: float) -> str:
        token = "ya29.local-" + secrets.token_urlsafe(24)
        self._tokens[token] = now + self.settings.token_lifetime
        return token

    def handle(self, call: Call) -> Reply:
        if call.api == "token":
            return self._token(call)
        request_id = secrets.token_hex(8)
        try:
            if call.api == "unknown" or (call.api == "ads" and not ADS_VERSION.fullmatch(
                    call.params.get("version", ""))):
                raise Rejected(404, "NOT_FOUND", f"No method at {call.method} {call.path}.")
            verdict = self._bearer(call)
            if verdict != "valid":
                return json_reply(401, auth_error(verdict), f"token_{verdict}")
            return self._authenticated(call, request_id)
        except Rejected as rejected:
            return self._rejected(call, rejected, request_id)
        except RequestFault as raised:
            return scripted_reply(self, call, raised.fault)

    def _authenticated(self, call: Call, request_id: str) -> Reply:
        if call.api == "ads":
            return self.uploads.upload(call, call.params["version"],
                                       self.settings.developer_token, request_id)
        if call.api == "request_status":
            return self.ingestion.status(call)
        return self.ingestion.ingest(call, request_id)

    def render(self, call: Call, fault: Fault) -> Reply:
        if call.api == "token":
            status = fault.status or 400
            error = fault.reason or ("server_error" if status >= 500 else "invalid_grant")
            return json_reply(status, {"error": error,
                                       "error_description": fault.message or error})
        status, reason, message = fault_status_and_reason(fault.status, fault.reason)
        if status == 401 and reason == "UNAUTHENTICATED":  # the front end's, as for a bad token
            return json_reply(401, auth_error("invalid"))
        rejected = Rejected(status, reason, fault.message or message)
        return self._rejected(call, rejected, secrets.token_hex(8))

    def _rejected(self, call: Call, rejected: Rejected, request_id: str) -> Reply:
        call.log["error"] = rejected.reason
        if call.api == "ads":
            body = ads_request_error(rejected.status, call.params.get("version", "v0"),
                                     rejected.reason, rejected.message, request_id)
        else:
            body = datamanager_error(rejected, request_id)
        return json_reply(rejected.status, body, rejected.reason.lower())

    def _bearer(self, call: Call) -> str:
        scheme, _, token = call.headers.get("Authorization", "").strip().partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        verdict = ("missing" if not scheme else "invalid" if expiry is None else
                   "expired" if expiry <= call.now else "valid")
        call.log["bearer"] = verdict
        return verdict

    def _token(self, call: Call) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(call.body.decode(errors="replace")).items()}
        client_id, client_secret = _basic(call.headers.get("Authorization", ""))
        client_id = form.get("client_id", client_id)
        client_secret = form.get("client_secret", client_secret)
        grant, refresh = form.get("grant_type"), form.get("refresh_token")
        settings = self.settings
        verdicts = (_verdict(client_id, settings.client_id),
                    _verdict(client_secret, settings.client_secret),
                    _verdict(refresh, settings.refresh_token))
        call.log.update(zip(("client_id", "client_secret", "refresh_token"), verdicts,
                            strict=True), grant_type=grant)
        refused = _token_refusal(grant, verdicts)
        if refused is not None:
            return _oauth_error(*refused)
        token = self.issue_token(call.now)
        return json_reply(200, {"access_token": token,
                                "expires_in": int(settings.token_lifetime),
                                "scope": SCOPES, "token_type": "Bearer"})

def _token_refusal(grant: str | None,
                   verdicts: tuple[str, str, str]) -> tuple[int, str, str] | None:
    """Google's answer to a bad refresh-token grant; ``verdicts``: of the client id, the
    client secret and the refresh token."""
    client, proof, refresh = verdicts
    refusals: tuple[tuple[bool, tuple[int, str, str]], ...] = (
        (not grant, (400, "invalid_request", "Missing required parameter: grant_type")),
        (grant != "refresh_token",
         (400, "unsupported_grant_type", f"Unsupported grant type: {grant}")),
        (client != "valid", (401, "invalid_client", "The OAuth client was not found.")),
        (proof != "valid", (401, "invalid_client", "Unauthorized")),
        (refresh == "missing",
         (400, "invalid_request", "Missing required parameter: refresh_token")),
        (refresh != "valid", (400, "invalid_grant", "Token has been expired or revoked.")),
    )
    return next((answer for refused, answer in refusals if refused), None)


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description}, error)


def _basic(header: str) -> tuple[str | None, str | None]:
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(credential, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password


def _verdict(value: str | None, expected: str) -> str:
    if not value:
        return "missing"
    return "valid" if secrets.compare_digest(value.encode(), expected.encode()) else "invalid"


class GoogleServer(DoubleServer[GooglePlatform]):
    """The Google-compatible server in a background thread: ``with GoogleServer() as g:``.

    ``g.url`` is the base URL of both APIs, ``g.token_url`` the token endpoint; the methods
    mirror the control API (``fail``, ``set_rate_limit``, ``register_click``, ...).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET,
                 refresh_token: str = DEFAULT_REFRESH_TOKEN,
                 developer_token: str = DEFAULT_DEVELOPER_TOKEN,
                 token_lifetime: float = DEFAULT_TOKEN_LIFETIME, strict_clicks: bool = False,
                 latency_ms: float = 0.0, clock_offset: float = 0.0,
                 rate_limits: Mapping[str, int] | None = None, faults: Sequence[Fault] = (),
                 log_size: int | None = None) -> None:
        google = GoogleSettings(client_id, client_secret, refresh_token, developer_token,
                                token_lifetime, strict_clicks)
        settings = DoubleSettings(latency_ms=latency_ms, clock_offset=clock_offset,
                                  rate_limits=dict(rate_limits or {}), faults=tuple(faults),
                                  **({} if log_size is None else {"log_size": log_size}))
        super().__init__(GooglePlatform(google), settings, host, port)

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def events(self, api: str | None = None) -> list[dict[str, Any]]:
        """The unique accepted events of both APIs (``api``: datamanager or ads), in order."""
        return self._events(**({"api": api} if api else {}))

    def register_click(self, click_id: str, click_time: float) -> None:
        """A click the Ads API knows, at ``click_time`` (epoch seconds)."""
        self.script(clicks=[{"click_id": click_id, "click_time": click_time}])

    def access_token(self) -> str:
        """An access token issued without the OAuth round trip."""
        return self._call(lambda s: s.platform.issue_token(s.clock.now()))

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """The platform's knobs (see the module docstring), e.g. ``strict_clicks=True``."""
        return self.script(**knobs)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--refresh-token", default=DEFAULT_REFRESH_TOKEN)
    parser.add_argument("--developer-token", default=DEFAULT_DEVELOPER_TOKEN)
    parser.add_argument("--token-lifetime", type=float, default=DEFAULT_TOKEN_LIFETIME,
                        help="seconds an access token lasts (default: %(default)s)")
    parser.add_argument("--strict-clicks", action="store_true",
                        help="CLICK_NOT_FOUND for clicks not registered (default: accept them)")


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(
        argv, prog="python -m processor.devkit.google_server",
        description="A Google-compatible server (OAuth token endpoint, Data Manager API, "
                    "Google Ads uploadClickConversions) for local runs and tests.",
        add_arguments=_arguments, platform=lambda args: GooglePlatform(GoogleSettings(
            args.client_id, args.client_secret, args.refresh_token, args.developer_token,
            args.token_lifetime, args.strict_clicks)))


if __name__ == "__main__":
    sys.exit(main())
