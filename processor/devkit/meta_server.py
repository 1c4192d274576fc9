"""A Meta-compatible Conversions API server (aiohttp) for local runs and tests.

It answers ``POST /{version}/{pixel_id}/events`` with a JSON body ``{"data": [...],
"test_event_code"?}`` (a form body with ``data`` as a JSON string, as Graph also takes, works
too) the way Graph does, and keeps what it accepted. Nothing here calls Meta. The sending
stage talks to it through ``META_BASE_URL`` exactly as to ``https://graph.facebook.com``.

Checks, in this order; the first failure answers for the whole request, because Meta
rejects a batch whole:

* the path: a ``vN.M`` version (else code 2500) and a numeric pixel id (else 100/33);
* the token: ``Authorization: Bearer`` (or ``OAuth``); none is code 104, a wrong one 190.
  A token in the query string (``access_token=``) is a finding in the log (never its value)
  and is accepted, or refused with 190 when ``query_auth="refuse"``;
* the body: ``data`` a list of 1..1,000 events;
* scripted faults for the events' ``event_id``;
* each event: ``event_name``; an integer ``event_time``, not more than 7 days old (100 with
  subcode 2804003: Meta answers the whole request so) nor more than a minute ahead; a known
  ``action_source``; ``website`` needs ``event_source_url`` and ``user_data.
  client_user_agent``; ``user_data`` with at least one key; ``em``, ``ph``, ``fn``, ``ln``
  and ``external_id`` lowercase hex SHA-256 (a raw value is 100); ``fbc`` as
  ``fb.<0-2>.<13-digit ms>.<click id>`` (else 100/2804001).

Success: 200 ``{"events_received": n, "messages": [], "fbtrace_id"}``. Events deduplicate as
Meta's do: the same (pixel, ``event_name``, ``event_id``) within 48 hours of the first counts
in ``events_received`` but is not a new event; events without ``event_id`` never merge.
``test_event_code`` events are kept apart (``GET /_events?test=true``), as Meta keeps them
out of real reporting.

Errors are Graph's ``{"error": {"message", "type", "code", "error_subcode"?, "is_transient",
"error_user_title"?, "error_user_msg"?, "fbtrace_id"}}`` with a ``WWW-Authenticate`` header.
HTTP statuses follow what Graph sends: 400 for 100, 104, 190 (``token_error_status=401``
for clients to be tested against both), 17 and 613 (throttling comes as a 400 with the
code, not as a 429), 403 for 4 and 10, 500 for 1, 503 for 2. A scripted fault may set any
status, 429 included; with only a status its code follows from it (429: 17, 401: 190,
403: 10, 500: 1, other 5xx: 2, other 4xx: 100).

Control API: see ``processor.devkit.api_double``; the platform's own knobs in ``POST
/_script`` are ``token``, ``query_auth`` (accept|refuse) and ``token_error_status``.
``GET /_events`` takes ``test=true`` and ``pixel_id``. Request numbers and ``api``
filters use the API name ``events``.

Command line (prints the base URL when ready; SIGTERM/SIGINT stop it)::

    python -m processor.devkit.meta_server --port 8081 --token local-meta-token
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast
from urllib.parse import parse_qs

import orjson

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

DEFAULT_TOKEN = "meta-test-token"  # noqa: S105 - the local fake's token, no secret
DEFAULT_VERSION = "v24.0"
API = "events"
MAX_EVENTS = 1000
MAX_AGE_SECONDS = 7 * 86400
MAX_AHEAD_SECONDS = 60
DEDUP_SECONDS = 48 * 3600
THROTTLED_SUBCODE = 2446079
TOO_OLD_SUBCODE = 2804003
BAD_FBC_SUBCODE = 2804001
ACTION_SOURCES = frozenset({"email", "website", "app", "phone_call", "chat", "physical_store",
                            "system_generated", "business_messaging", "other"})
HASHED_KEYS = ("em", "ph", "fn", "ln", "external_id")
HASH = re.compile(r"[0-9a-f]{64}")
FBC = re.compile(r"fb\.[0-2]\.\d{13}\.\S+")
VERSION = re.compile(r"v\d+\.\d+")
QueryAuth = Literal["accept", "refuse"]
QUERY_AUTH_POLICIES: tuple[QueryAuth, ...] = ("accept", "refuse")
FORM_TYPE = "application/x-www-form-urlencoded"

# code: (HTTP status, is_transient, message) as Graph sends them.
_CODES: dict[int, tuple[int, bool, str]] = {
    1: (500, True, "An unknown error occurred"),
    2: (503, True, "Service temporarily unavailable"),
    4: (403, True, "(#4) Application request limit reached"),
    10: (403, False, "(#10) Application does not have permission for this action"),
    17: (400, True, "(#17) User request limit reached"),
    100: (400, False, "Invalid parameter"),
    104: (400, False, "An access token is required to request this resource."),
    190: (400, False, "Invalid OAuth access token - Cannot parse access token"),
    613: (400, True, "(#613) Calls to this api have exceeded the rate limit."),
    2500: (400, False, "Unknown path components"),
}


def _code_for(status: int) -> int:
    """The Graph code a fault with only an HTTP status stands for."""
    return {429: 17, 401: 190, 403: 10, 500: 1}.get(status, 2 if status > 500 else 100)


@dataclasses.dataclass
class GraphError(Exception):
    code: int
    message: str = ""
    subcode: int | None = None
    title: str | None = None
    user_message: str | None = None
    status: int | None = None
    transient: bool | None = None
    kind: str = "OAuthException"


def _invalid(index: int, title: str, detail: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, "Invalid parameter", subcode, title, f"Event {index}: {detail}")


@dataclasses.dataclass(frozen=True)
class MetaSettings:
    token: str = DEFAULT_TOKEN
    query_auth: QueryAuth = "accept"
    token_error_status: int = 400

    def __post_init__(self) -> None:
        if self.query_auth not in QUERY_AUTH_POLICIES:
            raise ValueError(f"query_auth must be one of {QUERY_AUTH_POLICIES}")
        if self.token_error_status not in (400, 401) or not isinstance(self.token, str) \
                or not self.token:
            raise ValueError("token_error_status must be 400 or 401, and the token non-empty")


class MetaPlatform:
    """Graph's Conversions API endpoint: checks, dedup, the accepted events."""

    name = "Meta"
    routes = (("POST", "/{version}/{pixel_id}/events", API),)
    throttle = Fault(code=17, error_subcode=THROTTLED_SUBCODE, is_transient=True)

    def __init__(self, settings: MetaSettings) -> None:
        self.start_settings = settings
        self.settings = settings
        self._first_seen: dict[tuple[str, ...], float] = {}
        self._events: list[dict[str, Any]] = []
        self._test_events: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.settings = self.start_settings
        self._first_seen.clear()
        self._events.clear()
        self._test_events.clear()

    def config(self) -> dict[str, Any]:
        return {"query_auth": self.settings.query_auth,
                "token_error_status": self.settings.token_error_status,
                "events": len(self._events), "test_events": len(self._test_events)}

    def configure(self, knobs: dict[str, Any]) -> None:
        changes = {name: knobs.pop(name) for name in ("token", "query_auth",
                                                      "token_error_status") if name in knobs}
        if changes:
            self.settings = dataclasses.replace(self.settings, **changes)

    def events(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        store = self._test_events if query.get("test") in ("1", "true") else self._events
        pixel = query.get("pixel_id")
        return [event for event in store if pixel is None or event["pixel_id"] == pixel]

    def handle(self, call: Call) -> Reply:
        try:
            if call.api != API or not VERSION.fullmatch(call.params.get("version", "")):
                raise GraphError(2500, f"Unknown path components: {call.path}")
            self._authenticate(call)
            pixel = call.params["pixel_id"]
            call.log["pixel_id"] = pixel
            if not pixel.isdigit():
                raise GraphError(100, f"Unsupported post request. Object with ID '{pixel}' "
                                 "does not exist or does not support this operation", 33,
                                 kind="GraphMethodException")
            data, test_code = self._read(call)
            fault = call.fault_for(_event_ids(data))
            if fault is not None:
                return scripted_reply(self, call, fault)
            for index, event in enumerate(data):
                _check_event(event, index, call.now)
        except GraphError as error:
            return self._error(error, call)
        return self._accept(call, pixel, data, test_code)

    def render(self, call: Call, fault: Fault) -> Reply:
        code = fault.code if fault.code is not None else _code_for(fault.status or 400)
        return self._error(GraphError(code, fault.message or "", fault.error_subcode,
                                      status=fault.status, transient=fault.is_transient), call)

    def _authenticate(self, call: Call) -> None:
        header = call.headers.get("Authorization", "")
        scheme, _, credential = header.strip().partition(" ")
        in_query = call.query.get("access_token")
        call.log["auth"] = "header" if header else "query" if in_query is not None else "none"
        if in_query is not None:
            call.log["findings"] = ["access_token_in_query"]
            if self.settings.query_auth == "refuse":
                call.log["credential"] = "refused"
                raise GraphError(190, "Access tokens are refused in the URL here: send them in "
                                 "the Authorization header")
        token = credential.strip() if scheme.lower() in ("bearer", "oauth") else (
            None if header else in_query)
        if not token:
            call.log["credential"] = "missing" if not header else "invalid"
            raise GraphError(104 if not header else 190)
        call.log["credential"] = "valid" if secrets.compare_digest(
            token.encode(), self.settings.token.encode()) else "invalid"
        if call.log["credential"] != "valid":
            raise GraphError(190)

    def _read(self, call: Call) -> tuple[list[Any], str | None]:
        try:
            if call.headers.get("Content-Type", "").startswith(FORM_TYPE):
                form = {k: v[-1] for k, v in parse_qs(call.body.decode()).items()}
                body: Any = {**form, "data": orjson.loads(form.get("data", "null"))}
            else:
                body = call.json()
        except (ValueError, UnicodeDecodeError):
            raise GraphError(100, "The body must be JSON, with data a JSON array") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            raise GraphError(100, "(#100) The parameter data is required and must be a "
                             "non-empty array")
        call.log["events"] = len(data)
        call.log["event_ids"] = _event_ids(data)[:100]
        if len(data) > MAX_EVENTS:
            raise GraphError(100, f"(#100) data may hold at most {MAX_EVENTS} events, not "
                             f"{len(data)}")
        test_code = body.get("test_event_code")
        if test_code is not None and not isinstance(test_code, str):
            raise GraphError(100, "test_event_code must be a string")
        call.log["test_event_code"] = bool(test_code)
        return data, test_code or None

    def _accept(self, call: Call, pixel: str, data: list[Any], test_code: str | None) -> Reply:
        store = self._test_events if test_code else self._events
        new = 0
        for event in data:
            event_id = event.get("event_id")
            key = (test_code or "", pixel, event["event_name"], str(event_id))
            first = self._first_seen.get(key) if event_id is not None else None
            if first is not None and call.now - first < DEDUP_SECONDS:
                continue
            if event_id is not None:
                self._first_seen[key] = call.now
            new += 1
            store.append({"pixel_id": pixel, "event_name": event["event_name"],
                          "event_id": event_id, "event_time": event["event_time"],
                          "action_source": event["action_source"],
                          "test_event_code": test_code, "request": call.seq,
                          "received_at": call.now, "event": event})
        call.log.update(new=new, duplicates=len(data) - new)
        trace = _trace_id()
        return json_reply(200, {"events_received": len(data), "messages": [],
                                "fbtrace_id": trace}, headers={"x-fb-trace-id": trace})

    def _error(self, error: GraphError, call: Call) -> Reply:
        status, transient, message = _CODES.get(error.code, (400, False, "Invalid parameter"))
        if error.code == 190:
            status = self.settings.token_error_status
        body: dict[str, Any] = {"message": error.message or message, "type": error.kind,
                                "code": error.code}
        if error.subcode is not None:
            body["error_subcode"] = error.subcode
        body["is_transient"] = transient if error.transient is None else error.transient
        if error.title:
            body.update(error_user_title=error.title, error_user_msg=error.user_message)
        body["fbtrace_id"] = trace = _trace_id()
        kind = "invalid_token" if error.code in (104, 190) else "invalid_request"
        headers = {"x-fb-trace-id": trace, "WWW-Authenticate":
                   f'OAuth "Facebook Platform" "{kind}" "{_header_safe(body["message"])}"'}
        call.log["error"] = {"code": error.code, "error_subcode": error.subcode}
        return json_reply(error.status or status, {"error": body}, f"graph_{error.code}",
                          headers)


def _check_event(event: Any, index: int, now: float) -> None:
    if not isinstance(event, dict):
        raise _invalid(index, "Invalid Event", "each event must be a JSON object")
    name, when, source = event.get("event_name"), event.get("event_time"), event.get(
        "action_source")
    if not isinstance(name, str) or not name:
        raise _invalid(index, "Missing Event Name", "event_name is required")
    if not isinstance(when, int) or isinstance(when, bool):
        raise _invalid(index, "Invalid Event Time", "event_time must be an integer (Unix s)")
    if now - when > MAX_AGE_SECONDS:
        raise _invalid(index, "Event Timestamp Too Old", "event_time is more than 7 days in "
                       "the past; the whole request is refused", TOO_OLD_SUBCODE)
    if when - now > MAX_AHEAD_SECONDS:
        raise _invalid(index, "Event Timestamp In The Future",
                       "event_time is more than a minute ahead")
    if source not in ACTION_SOURCES:
        raise _invalid(index, "Invalid Action Source",
                       f"action_source must be one of {sorted(ACTION_SOURCES)}")
    user = event.get("user_data")
    if not isinstance(user, dict) or not user:
        raise _invalid(index, "Missing User Data", "user_data needs at least one key")
    if source == "website" and not (_filled(event.get("event_source_url"))
                                    and _filled(user.get("client_user_agent"))):
        raise _invalid(index, "Missing Website Parameters", "action_source website needs "
                       "event_source_url and user_data.client_user_agent")
    _check_user_data(user, index)


def _check_user_data(user: Mapping[str, Any], index: int) -> None:
    for key in HASHED_KEYS:
        if key in user and not all(isinstance(v, str) and HASH.fullmatch(v)
                                   for v in _values(user[key])):
            raise _invalid(index, "Unhashed User Data", f"user_data.{key} must be a SHA-256 "
                           "hash in lowercase hex, never the raw value")
    fbc = user.get("fbc")
    if fbc is not None and not (isinstance(fbc, str) and FBC.fullmatch(fbc)):
        raise _invalid(index, "Click ID Incorrectly Formatted", "user_data.fbc must look "
                       "like fb.1.<13-digit ms timestamp>.<fbclid>", BAD_FBC_SUBCODE)


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) and value else [value]


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _event_ids(data: Iterable[Any]) -> list[str]:
    return [str(e["event_id"]) for e in data if isinstance(e, dict) and "event_id" in e]


def _trace_id() -> str:
    return secrets.token_urlsafe(8)


def _header_safe(text: str) -> str:
    return text.replace('"', "'").encode("ascii", "replace").decode()


class MetaServer(DoubleServer[MetaPlatform]):
    """The Meta-compatible server in a background thread: ``with MetaServer() as meta:``.

    ``meta.url`` is the base URL to use as ``META_BASE_URL``; the methods mirror the control
    API (``fail``, ``throttle``, ``set_latency``, ``refuse``, ``set_clock_offset``, ...).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str = DEFAULT_TOKEN,
                 query_auth: QueryAuth = "accept", token_error_status: int = 400,
                 latency_ms: float = 0.0, clock_offset: float = 0.0,
                 rate_limit_per_minute: int = 0, faults: Sequence[Fault] = (),
                 log_size: int | None = None) -> None:
        settings = DoubleSettings(latency_ms=latency_ms, clock_offset=clock_offset,
                                  rate_limits={API: rate_limit_per_minute},
                                  faults=tuple(faults),
                                  **({} if log_size is None else {"log_size": log_size}))
        super().__init__(MetaPlatform(MetaSettings(token, query_auth, token_error_status)),
                         settings, host, port)

    def events_url(self, pixel_id: str, version: str = DEFAULT_VERSION) -> str:
        return f"{self.url}/{version}/{pixel_id}/events"

    def events(self, *, test: bool = False, pixel_id: str | None = None) -> list[dict[str, Any]]:
        """The unique accepted events (``test=True``: those sent with a test_event_code)."""
        query = {"test": "true"} if test else {}
        return self._events(**query, **({"pixel_id": pixel_id} if pixel_id else {}))

    def throttle(self, seconds: float, *, status: int | None = None, code: int = 17) -> None:
        """A throttling storm: every request for ``seconds`` gets code 17 (or 4, 613), as a
        400 by default as Graph sends it, or with ``status`` (e.g. 429)."""
        self.fail(status, code=code, is_transient=True, seconds=seconds,
                  error_subcode=THROTTLED_SUBCODE if code == 17 else None)

    def configure(self, *, token: str | None = None, query_auth: QueryAuth | None = None,
                  token_error_status: int | None = None) -> dict[str, Any]:
        knobs = {"token": token, "query_auth": query_auth,
                 "token_error_status": token_error_status}
        return self.script(**{k: v for k, v in knobs.items() if v is not None})


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the accepted access token")
    parser.add_argument("--query-auth", choices=QUERY_AUTH_POLICIES, default="accept",
                        help="a token in the URL: accepted (and flagged in the log) or refused")
    parser.add_argument("--token-error-status", type=int, choices=(400, 401), default=400,
                        help="HTTP status of code 190 (Graph sends 400; default %(default)s)")


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(
        argv, prog="python -m processor.devkit.meta_server",
        description="A Meta-compatible Conversions API server for local runs and tests.",
        add_arguments=_arguments, platform=lambda args: MetaPlatform(MetaSettings(
            args.token, cast(QueryAuth, args.query_auth), args.token_error_status)))


if __name__ == "__main__":
    sys.exit(main())
