"""A Clearbit-compatible HTTP server (aiohttp) for local runs, tests, chaos runs and benchmarks.

Why a real server rather than a mocked transport: the processor's HTTP client,
its connection pool, timeouts, keep-alive and retry behaviour are part of what
the integration, chaos and benchmark runs measure, so they talk to a real TCP
port. Nothing here ever calls the real Clearbit.

It answers ``GET /v2/combined/find?email=...`` as Clearbit does (see
``shared/reference/clearbit-api.md``), with invented records from
``processor.devkit.clearbit_records``. With no setup, the email's local part
picks the answer::

    notfound...@                       404 unknown_record
    invalid...@, info@, noreply@, ...  422 params_invalid (malformed emails too)
    queued...@                         202 with an empty body the first 2 times, then 200
    error...@                          500 api_error
    slow...@                           200 after 2 s
    nocompany...@                      200, company null
    nobody...@                         200, person and company null
    anything else                      200 found (free-mail domains: company null)

Rules can also make an answer hostile, to test what a client does with it:
``size`` pads a 200's record to that many bytes (a long ``person.padding``),
``encoding`` compresses the body (``gzip``) or only claims to (``bad-gzip``:
``Content-Encoding: gzip`` on bytes that are not), ``drip_ms`` sends the body one
byte every that many ms, ``chunked`` streams it without a ``Content-Length``; a
``body`` of any shape (text that is not JSON, a person that is a list) and any
``headers`` (``Retry-After: 999999999``) are sent as given.

A request goes through these checks, first match wins: outage ``drop``/``refuse``
(the connection is closed unanswered), the forced-429 window, outage ``status``,
unknown route (404 ``unknown_route``), authentication (401), the rate limit
(429), the quota switch (402), a missing email (422), a per-email rule, the
defaults above. The global latency and any rule or ``slow`` delay are then
awaited with ``asyncio.sleep``, so a slow answer never holds up the others.

Authentication: ``Authorization: Basic base64(key:)``, ``Authorization: Bearer
key`` or (Hunter's style) ``X-API-KEY: key``. The log keeps the scheme, never the key.

Rate limit: a sliding 60-second window log. A request is admitted when fewer
than ``rate_limit_per_minute`` requests were admitted in the 60 s before it;
refused requests don't count. ``x-ratelimit-remaining`` is the room left in the
window, ``x-ratelimit-reset`` the epoch second when the oldest admitted request
leaves it. The three ``x-ratelimit-*`` headers are on every answer while a
limit (or a forced-429 window) is on; ``Retry-After`` only when asked for.

Control API (JSON, no auth), mirrored by ``ClearbitServer``'s methods::

    GET    /_control/health      {"ok": true}
    GET    /_control/config      the current knobs (never the key)
    GET    /_control/rules       the rules by email
    POST   /_control/rules       {"email", "status", "delay_ms", "times", "body", "headers",
                                 "content_type", "size", "encoding", "drip_ms",
                                 "chunked"}, or {"rules": [...]}
    DELETE /_control/rules       all of them, or ?email=
    POST   /_control/latency     {"latency_ms": 50}
    POST   /_control/rate-limit  {"per_minute": 600, "retry_after": false}   (0: no limit)
    POST   /_control/force-429   {"seconds": 10, "retry_after": true}       (0 ends it)
    POST   /_control/quota       {"exhausted": true}: every lookup gets 402
    POST   /_control/outage      {"mode": "off|status|drop|refuse", "status": 503,
                                 "seconds": 5}; refuse closes the port, so over HTTP
                                 it needs "seconds" to come back
    GET    /_control/requests    the log, oldest first; ?email= (as sent) and ?limit=
    GET    /_control/stats       counts, kept for every request, unlike the log
    POST   /_control/reset       back to the start configuration; log and stats cleared

POSTs answer the new configuration, or 400 with an error body.

Command line (prints the base URL on one line when ready; SIGTERM/SIGINT stop it)::

    python -m processor.devkit.clearbit_server --port 8080 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import gzip
import logging
import math
import re
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypedDict, TypeVar, cast

import orjson
from aiohttp import web

from processor.devkit.clearbit_records import combined_body

log = logging.getLogger(__name__)

DEFAULT_KEY = "sk_test_local"
DEFAULT_LOG_SIZE = 100_000
LOOKUP_PATH = "/v2/combined/find"
NOMINAL_LIMIT = 600
"""What ``x-ratelimit-limit`` says during a forced-429 window when no limit is set."""
WINDOW_SECONDS = 60.0
QUEUED_TIMES = 2
SLOW_SECONDS = 2.0
LOGGED_HEADERS = ("API-Version", "User-Agent", "Accept")
ROLE_LOCAL_PARTS = frozenset({
    "info", "noreply", "no-reply", "donotreply", "do-not-reply", "admin", "support", "sales",
    "contact", "webmaster", "postmaster", "hostmaster", "abuse", "billing", "help",
})
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}")
OutageMode = Literal["off", "status", "drop", "refuse"]
OUTAGE_MODES: tuple[OutageMode, ...] = ("off", "status", "drop", "refuse")
JSON_TYPE = "application/json; charset=utf-8"
T = TypeVar("T")

_ERRORS = {
    401: ("unauthorized", "Invalid API key."),
    402: ("payment_required", "Your plan's lookup quota is used up."),
    403: ("forbidden", "This key may not use this endpoint."),
    404: ("unknown_record", "Unknown email address."),
    422: ("params_invalid", "Invalid email."),
    429: ("rate_limit", "Rate limit exceeded."),
}


class RequestEntry(TypedDict):
    """One line of the request log. ``status`` 0: the connection was closed unanswered."""

    seq: int
    time: float
    method: str
    path: str
    email: str | None
    status: int
    cause: str
    auth_scheme: str
    params: dict[str, str]
    headers: dict[str, str]


class LogLine(NamedTuple):
    """A request as the log keeps it: a tuple is a third of the dict's memory."""

    seq: int
    time: float
    method: str
    path: str
    email: str | None
    status: int
    cause: str
    auth_scheme: str
    params: dict[str, str] | None
    headers: tuple[str | None, ...]

    def entry(self) -> RequestEntry:
        return {"seq": self.seq, "time": self.time, "method": self.method, "path": self.path,
                "email": self.email, "status": self.status, "cause": self.cause,
                "auth_scheme": self.auth_scheme, "params": dict(self.params or {}),
                "headers": {name: value for name, value in zip(LOGGED_HEADERS, self.headers,
                                                                 strict=True) if value}}


class Stats(TypedDict):
    """Counts over every API request since start or reset, refused and dropped ones too.

    ``by_status`` keys are strings, as in JSON (``"0"``: dropped unanswered);
    ``by_email_count`` keys are the emails as sent, not normalized.
    """

    total: int
    by_status: dict[str, int]
    by_email_count: dict[str, int]
    max_requests_in_any_60s_window: int
    peak_concurrency: int
    in_flight: int


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one email (matched trimmed and case-insensitively) gets instead of the default.

    ``status`` None keeps the default answer (useful with ``delay_ms``); ``times``
    None applies forever, else the rule is dropped after that many requests;
    ``body`` None sends Clearbit's body for the status (the record for 200), a str
    is sent verbatim, anything else as JSON. ``size`` pads a 200's record (the
    default one, or a ``body`` object with a person) to that many bytes;
    ``encoding`` is None, ``gzip`` or ``bad-gzip``; ``drip_ms`` > 0 sends the body
    one byte at a time, that many ms apart; ``chunked`` sends no Content-Length.
    """

    status: int | None = None
    delay_ms: float = 0.0
    times: int | None = None
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    content_type: str | None = None
    size: int | None = None
    encoding: str | None = None
    drip_ms: float = 0.0
    chunked: bool = False

    def __post_init__(self) -> None:
        if self.status is not None and not 200 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, not {self.status}")
        if self.delay_ms < 0 or (self.times is not None and self.times < 1):
            raise ValueError("delay_ms must be >= 0 and times >= 1 (or null)")
        if self.encoding not in ENCODINGS or self.drip_ms < 0 or (
                self.size is not None and self.size < 0):
            raise ValueError(f"encoding must be one of {ENCODINGS}, drip_ms and size >= 0")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> tuple[str, Rule]:
        """``(email, rule)`` from the control API's JSON object."""
        email, status, times = data.get("email"), data.get("status"), data.get("times")
        headers, content_type = data.get("headers") or {}, data.get("content_type")
        if not isinstance(email, str) or not email:
            raise ValueError("a rule needs an email")
        if not (status is None or _is_int(status)) or not (times is None or _is_int(times)):
            raise ValueError("status and times must be integers or null")
        if not isinstance(headers, dict) or not all(
                isinstance(v, str) for v in headers.values()):
            raise ValueError("headers must be an object of strings")
        if content_type is not None and not isinstance(content_type, str):
            raise ValueError("content_type must be a string")
        size, encoding = data.get("size"), data.get("encoding")
        if not (size is None or _is_int(size)) or not (encoding is None
                                                       or isinstance(encoding, str)):
            raise ValueError("size must be an integer or null, encoding a string or null")
        return email, cls(status=status, delay_ms=_number(data, "delay_ms", 0.0), times=times,
                          body=data.get("body"), headers=headers, content_type=content_type,
                          size=size, encoding=encoding, drip_ms=_number(data, "drip_ms", 0.0),
                          chunked=_flag(data, "chunked", False))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "headers": dict(self.headers)}


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """The start configuration; ``reset()`` returns to it."""

    key: str = DEFAULT_KEY
    latency_ms: float = 0.0
    rate_limit_per_minute: int = 0
    retry_after: bool = False
    quota_exhausted: bool = False
    outage: OutageMode = "off"
    outage_status: int = 503
    log_size: int = DEFAULT_LOG_SIZE
    rules: Mapping[str, Rule] = dataclasses.field(default_factory=dict)
    # "hunter": answer as Hunter's combined endpoint with clearbit_format=true does
    # (see ``hunter_reply``), to test the Hunter provider against the same knobs.
    flavor: str = "clearbit"

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}")
        if min(self.latency_ms, self.rate_limit_per_minute, self.log_size) < 0:
            raise ValueError("latency_ms, rate_limit_per_minute and log_size must be >= 0")
        if self.outage not in OUTAGE_MODES or not 400 <= self.outage_status <= 599:
            raise ValueError(f"outage must be one of {OUTAGE_MODES}, outage_status 400-599")


class Reply(NamedTuple):
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = {}
    delay: float = 0.0
    cause: str = "default"
    drip: float = 0.0  # seconds between the body's bytes (0: all at once)
    chunked: bool = False
    rule: Rule | None = None  # the rule that made it, if one did


ENCODINGS = (None, "gzip", "bad-gzip")
STREAM_CHUNK = 64 * 1024


FLAVORS = ("clearbit", "hunter")


def hunter_reply(reply: Reply) -> Reply:
    """The same answer in Hunter's vocabulary: bodies in a ``data`` envelope, errors as
    ``{"errors": [{"id", "code", "details"}]}``, 403 for "slow down" (Clearbit's 429)
    and 429 for "usage limit reached" (Clearbit's 402)."""
    status = {429: 403, 402: 429}.get(reply.status, reply.status)
    if reply.status in (200, 201) and reply.body:
        return reply._replace(body=b'{"data":' + reply.body + b',"meta":{"params":{}}}')
    if reply.status >= 400 and reply.body:
        try:
            error = orjson.loads(reply.body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            error = {}
        body = orjson.dumps({"errors": [{"id": error.get("type", "error"), "code": status,
                                         "details": error.get("message", "")}]})
        return reply._replace(status=status, body=body)
    return reply._replace(status=status)


def error_body(kind: str, message: str) -> bytes:
    """Clearbit's error shape: ``{"error": {"type": ..., "message": ...}}``."""
    return orjson.dumps({"error": {"type": kind, "message": message}})


def error_reply(status: int, cause: str, kind: str | None = None, message: str | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
    default_kind, default_message = _ERRORS.get(
        status, ("api_error", "Something went wrong on our end.") if status >= 500
        else ("params_invalid", "The request was refused."))
    return Reply(status, error_body(kind or default_kind, message or default_message),
                 headers or {}, cause=cause)


_NOBODY = b'{"person":null,"company":null}'
_AUTH_REPLIES = {
    "missing": error_reply(401, "auth", "auth_required", "An API key is required: send the "
                           "secret key (sk_...) as the Basic user name or as a Bearer token.",
                           {"WWW-Authenticate": 'Basic realm="Clearbit"'}),
    "publishable": error_reply(401, "auth", "unauthorized", "This is a publishable key (pk_...);"
                               " the Enrichment API needs the secret key (sk_...).",
                               {"WWW-Authenticate": 'Basic realm="Clearbit"'}),
    "invalid": error_reply(401, "auth", "unauthorized", "Invalid API key.",
                           {"WWW-Authenticate": 'Basic realm="Clearbit"'}),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(data: Mapping[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number >= 0")
    return float(value)


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


class SlidingWindow:
    """Monotonic times of the events of the last 60 seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def count(self, now: float) -> int:
        times, horizon = self._times, now - WINDOW_SECONDS
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def add(self, now: float) -> int:
        """Record an event; the number in the window, this one included."""
        self._times.append(now)
        return self.count(now)

    def frees_in(self, now: float) -> float:
        """Seconds until the oldest event leaves the window (a full window if none)."""
        return self._times[0] + WINDOW_SECONDS - now if self._times else WINDOW_SECONDS


class Responder:
    """Every knob, the request log and the counts; decides each answer.

    No I/O and no awaiting: the aiohttp service calls ``lookup`` and sleeps the
    returned delay, so all of this is touched only from the server's event loop.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        s = self.settings
        self.latency = s.latency_ms / 1000
        self.rate_limit, self.retry_after = s.rate_limit_per_minute, s.retry_after
        self.quota_exhausted = s.quota_exhausted
        self.outage: OutageMode = "off"
        self.outage_status = s.outage_status
        self.forced_until, self.forced_retry_after = 0.0, False
        self.rules = {_normalize(email): rule for email, rule in s.rules.items()}
        self._accepted = {f"Bearer {s.key}": "bearer",
                          "Basic " + base64.b64encode(f"{s.key}:".encode()).decode(): "basic"}
        self._admitted = SlidingWindow()
        self._arrivals = SlidingWindow()
        self._queued: dict[str, int] = {}
        self.log: deque[LogLine] = deque(maxlen=s.log_size)
        self.total, self.peak, self.max_in_window = 0, self.in_flight, 0
        self.by_status: Counter[int] = Counter()
        self.by_email: Counter[str] = Counter()

    def config(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"latency_ms": self.latency * 1000, "rate_limit_per_minute": self.rate_limit,
                "retry_after": self.retry_after, "quota_exhausted": self.quota_exhausted,
                "forced_429_seconds_left": max(0.0, self.forced_until - now),
                "forced_429_retry_after": self.forced_retry_after, "outage": self.outage,
                "outage_status": self.outage_status, "log_size": self.settings.log_size,
                "rules": {email: rule.to_json() for email, rule in self.rules.items()}}

    def set_rule(self, email: str, rule: Rule) -> None:
        self.rules[_normalize(email)] = rule

    def clear_rules(self, email: str | None = None) -> None:
        if email is None:
            self.rules.clear()
        else:
            self.rules.pop(_normalize(email), None)

    def set_latency(self, latency_ms: float) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency = latency_ms / 1000

    def set_rate_limit(self, per_minute: int, retry_after: bool = False) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be >= 0 (0: no limit)")
        self.rate_limit, self.retry_after = per_minute, retry_after

    def set_quota_exhausted(self, exhausted: bool) -> None:
        self.quota_exhausted = exhausted

    def force_429(self, seconds: float, retry_after: bool) -> None:
        """Answer 429 to everything for ``seconds`` from now (0 ends the window)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.forced_until = time.monotonic() + seconds if seconds > 0 else 0.0
        self.forced_retry_after = retry_after

    def requests(self, email: str | None = None, limit: int | None = None) -> list[RequestEntry]:
        lines = [line for line in self.log if email is None or line.email == email]
        return [line.entry() for line in (lines[-limit:] if limit else lines)]

    def stats(self) -> Stats:
        return {"total": self.total,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_email_count": dict(self.by_email),
                "max_requests_in_any_60s_window": self.max_in_window,
                "peak_concurrency": self.peak, "in_flight": self.in_flight}

    def lookup(self, method: str, path: str, query: Mapping[str, str],
               headers: Mapping[str, str], now: float, wall: float) -> Reply:
        """The answer to one API request, logged and counted."""
        email = query.get("email")
        scheme, verdict = self._auth(headers)
        self.max_in_window = max(self.max_in_window, self._arrivals.add(now))
        reply = self._decide(method, path, email, verdict, now)
        if self.settings.flavor == "hunter" and reply.status:
            reply = hunter_reply(reply)
        reply = _delivered(reply)
        rate_headers = self._rate_headers(now, wall)
        if rate_headers:
            reply = reply._replace(headers={**reply.headers, **rate_headers})
        self.total += 1
        self.by_status[reply.status] += 1
        if email is not None:
            self.by_email[email] += 1
        params = {k: self._redact(k, v) for k, v in query.items() if k != "email"}
        self.log.append(LogLine(self.total, wall, method, path, email, reply.status, reply.cause,
                                scheme, params or None, tuple(map(headers.get, LOGGED_HEADERS))))
        return reply

    def _decide(  # noqa: PLR0911, PLR0912 - one rung per documented check, in that order
            self, method: str, path: str, email: str | None, verdict: str, now: float) -> Reply:
        if self.outage in ("drop", "refuse"):
            return Reply(0, cause=f"outage_{self.outage}")
        if self.forced_until > now:
            return self._too_many(self.forced_until - now, self.forced_retry_after, "forced_429")
        if self.outage == "status":
            return error_reply(self.outage_status, "outage")
        if method != "GET" or path != LOOKUP_PATH:
            return error_reply(404, "unknown_route", "unknown_route", f"No route for {path}.")
        if verdict != "ok":
            return _AUTH_REPLIES[verdict]
        if self.rate_limit:
            if self._admitted.count(now) >= self.rate_limit:
                return self._too_many(self._admitted.frees_in(now), self.retry_after,
                                      "rate_limit")
            self._admitted.add(now)
        if self.quota_exhausted:
            return error_reply(402, "quota")
        if not email:
            return error_reply(422, "params_invalid", message="Missing required param: email.")
        key = _normalize(email)
        rule = self.rules.get(key)
        if rule is None:
            return self._default(key)
        if rule.times is not None:
            if rule.times > 1:
                self.rules[key] = dataclasses.replace(rule, times=rule.times - 1)
            else:
                del self.rules[key]
        return self._ruled(key, rule)

    def _ruled(self, email: str, rule: Rule) -> Reply:
        if rule.status is None:
            reply = self._default(email)
        elif rule.body is not None:
            text = isinstance(rule.body, str)
            body = rule.body.encode() if text else orjson.dumps(rule.body)
            content_type = rule.content_type or ("text/plain; charset=utf-8" if text else None)
            reply = Reply(rule.status, body, {"Content-Type": content_type} if content_type
                          else {})
        elif rule.status in (200, 201):
            reply = Reply(rule.status, combined_body(email))
        elif rule.status == 202:
            reply = Reply(202)
        else:
            reply = error_reply(rule.status, "rule")
        if rule.size is not None and reply.status in (200, 201) and reply.body:
            reply = reply._replace(body=padded(reply.body, rule.size))
        return reply._replace(headers={**reply.headers, **rule.headers}, cause="rule",
                              delay=reply.delay + rule.delay_ms / 1000, rule=rule)

    def _default(self, email: str) -> Reply:  # noqa: PLR0911 - one rung per prefix
        local = email.partition("@")[0]
        if (local.startswith("invalid") or local in ROLE_LOCAL_PARTS
                or not EMAIL_PATTERN.fullmatch(email)):
            return error_reply(422, "invalid_email")
        if local.startswith("notfound"):
            return error_reply(404, "notfound")
        if local.startswith("queued"):
            seen = self._queued[email] = self._queued.get(email, 0) + 1
            if seen <= QUEUED_TIMES:
                return Reply(202, cause="queued")
        if local.startswith("error"):
            return error_reply(500, "error")
        if local.startswith("nobody"):
            return Reply(200, _NOBODY)
        if local.startswith("slow"):
            return Reply(200, combined_body(email), delay=SLOW_SECONDS)
        return Reply(200, combined_body(email, with_company=not local.startswith("nocompany")))

    def _auth(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """``(scheme, verdict)``; verdict is ok, missing, publishable or invalid."""
        value = headers.get("Authorization")
        if value is None:
            hunter = headers.get("X-API-KEY")
            return ("x-api-key", self._verdict(hunter)) if hunter else ("none", "missing")
        if scheme := self._accepted.get(value):
            return scheme, "ok"
        kind, _, credential = value.strip().partition(" ")
        if kind.lower() == "bearer":
            return "bearer", self._verdict(credential)
        if kind.lower() == "basic":
            try:
                decoded = base64.b64decode(credential.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return "basic", "invalid"
            return "basic", self._verdict(decoded.partition(":")[0])
        return "other", "invalid"

    def _verdict(self, key: str) -> str:
        key = key.strip()
        if not key:
            return "missing"
        if key == self.settings.key:
            return "ok"
        return "publishable" if key.startswith("pk_") else "invalid"

    def _redact(self, name: str, value: str) -> str:
        secret = value == self.settings.key or value.startswith(("sk_", "pk_")) or "key" in name
        return "[redacted]" if secret else value

    def _too_many(self, wait: float, retry_after: bool, cause: str) -> Reply:
        seconds = max(1, math.ceil(wait))
        reply = error_reply(429, cause, message=f"Rate limit exceeded. Retry in {seconds} s.")
        return reply._replace(headers={"Retry-After": str(seconds)}) if retry_after else reply

    def _rate_headers(self, now: float, wall: float) -> dict[str, str]:
        if self.forced_until > now:
            limit, remaining = self.rate_limit or NOMINAL_LIMIT, 0
            reset = wall + self.forced_until - now
        elif self.rate_limit:
            limit = self.rate_limit
            remaining = max(0, limit - self._admitted.count(now))
            reset = wall + self._admitted.frees_in(now)
        else:
            return {}
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(math.ceil(reset))}


def _normalize(email: str) -> str:
    return email.strip().lower()


def padded(body: bytes, size: int) -> bytes:
    """A 200 body made ``size`` bytes long by a ``person.padding`` string (unchanged when
    it is already as long, or has no person object to pad)."""
    parsed = orjson.loads(body)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("person"), dict):
        return body
    parsed["person"]["padding"] = ""
    room = size - len(orjson.dumps(parsed))
    if room <= 0:
        return body
    parsed["person"]["padding"] = "x" * room
    return orjson.dumps(parsed)


def _delivered(reply: Reply) -> Reply:
    """The rule's ways of delivering an answer badly, applied last (after Hunter's
    envelope): the encoding, the drip, the chunks."""
    rule = reply.rule
    if rule is None:
        return reply
    body, headers = reply.body, dict(reply.headers)
    if rule.encoding == "gzip":
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    elif rule.encoding == "bad-gzip":
        headers["Content-Encoding"] = "gzip"  # and the bytes are left as they are
    return reply._replace(body=body, headers=headers, drip=rule.drip_ms / 1000,
                          chunked=rule.chunked)


class ControlError(ValueError):
    """A control request the server cannot follow (answered 400)."""


class ClearbitService:
    """The aiohttp application around a ``Responder``: API routes, control routes, the port.

    Runs on whatever event loop starts it: ``ClearbitServer`` gives it a thread of
    its own, the command line runs it on the main loop.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.responder = Responder(settings)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host, self._port = "127.0.0.1", 0
        self._outage_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port) and return the base URL."""
        app = web.Application()
        control = [
            web.get("/_control/health", self._health),
            web.get("/_control/config", self._config),
            web.get("/_control/rules", self._rules),
            web.post("/_control/rules", self._add_rules),
            web.delete("/_control/rules", self._delete_rules),
            web.post("/_control/latency", self._latency),
            web.post("/_control/rate-limit", self._rate_limit),
            web.post("/_control/force-429", self._force_429),
            web.post("/_control/quota", self._quota),
            web.post("/_control/outage", self._outage),
            web.get("/_control/requests", self._requests),
            web.get("/_control/stats", self._stats),
            web.post("/_control/reset", self._reset),
        ]
        app.add_routes([*control, web.route("*", "/{tail:.*}", self._lookup)])
        # No access log: it would cost more than the rest of a lookup. On close,
        # lookups still sleeping get half a second, then their connections drop.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._host, self._port = host, port
        await self._listen()
        settings = self.responder.settings
        if settings.outage != "off":
            await self.set_outage(settings.outage, settings.outage_status)
        log.info("Clearbit-compatible server listening on %s", self.url)
        return self.url

    async def close(self) -> None:
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def set_outage(self, mode: OutageMode, status: int = 503,
                         seconds: float | None = None) -> None:
        """Switch the outage mode; with ``seconds``, back to ``off`` after that long."""
        if mode not in OUTAGE_MODES or not 400 <= status <= 599:
            raise ControlError(f"outage mode must be one of {OUTAGE_MODES}, status 4xx/5xx")
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        responder = self.responder
        responder.outage, responder.outage_status = mode, status
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "refuse" and self._site is None:
            await self._listen()
        if seconds:
            self._outage_timer = asyncio.get_running_loop().call_later(seconds, self._end_outage)
        log.info("outage mode %s (status %s, seconds %s)", mode, status, seconds)

    async def reset(self) -> None:
        settings = self.responder.settings
        self.responder.reset()
        await self.set_outage(settings.outage, settings.outage_status)

    async def _listen(self) -> None:
        if self._runner is None:
            raise RuntimeError("start() sets the runner up first")
        self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await self._site.start()
        if self._port == 0:
            self._port = int(self._runner.addresses[0][1])

    def _end_outage(self) -> None:
        task = asyncio.ensure_future(self.set_outage("off"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lookup(self, request: web.Request) -> web.StreamResponse:
        responder = self.responder
        responder.in_flight += 1
        responder.peak = max(responder.peak, responder.in_flight)
        try:
            reply = responder.lookup(request.method, request.path, request.query,
                                     request.headers, time.monotonic(), time.time())
            if reply.status == 0:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=503)  # never sent: the connection is gone
            delay = reply.delay + responder.latency
            if delay > 0:
                await asyncio.sleep(delay)
            headers = {"Content-Type": JSON_TYPE, **reply.headers}
            if reply.drip or reply.chunked:
                return await _stream(request, reply, headers)
            return web.Response(body=reply.body, status=reply.status, headers=headers)
        finally:
            responder.in_flight -= 1

    # Control routes: JSON in, JSON out, 400 with Clearbit's error shape when refused.

    async def _health(self, _: web.Request) -> web.Response:
        return _json({"ok": True})

    async def _config(self, _: web.Request) -> web.Response:
        return _json(self.responder.config())

    async def _rules(self, _: web.Request) -> web.Response:
        return _json(self.responder.config()["rules"])

    async def _add_rules(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            items = data.get("rules", [data])
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ControlError("rules must be a list of objects")
            for email, rule in [Rule.from_json(item) for item in items]:
                self.responder.set_rule(email, rule)
        return await self._control(request, apply)

    async def _delete_rules(self, request: web.Request) -> web.Response:
        self.responder.clear_rules(request.query.get("email"))
        return _json(self.responder.config())

    async def _latency(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            self.responder.set_latency(_number(data, "latency_ms", 0.0))
        return await self._control(request, apply)

    async def _rate_limit(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            per_minute = data.get("per_minute", 0)
            if not _is_int(per_minute):
                raise ControlError("per_minute must be an integer")
            self.responder.set_rate_limit(per_minute, _flag(data, "retry_after", False))
        return await self._control(request, apply)

    async def _force_429(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            self.responder.force_429(_number(data, "seconds", 0.0),
                                     _flag(data, "retry_after", False))
        return await self._control(request, apply)

    async def _quota(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            self.responder.set_quota_exhausted(_flag(data, "exhausted", True))
        return await self._control(request, apply)

    async def _outage(self, request: web.Request) -> web.Response:
        async def apply(data: dict[str, Any]) -> None:
            mode, status = data.get("mode", "status"), data.get("status", 503)
            seconds = _number(data, "seconds", 0.0) or None
            if mode == "refuse" and seconds is None:
                raise ControlError("mode refuse closes the port this API listens on: "
                                   "give seconds, after which it opens again")
            if mode not in OUTAGE_MODES or not _is_int(status):
                raise ControlError(f"mode must be one of {OUTAGE_MODES}, status an integer")
            await self.set_outage(cast(OutageMode, mode), status, seconds)
        return await self._control(request, apply)

    async def _requests(self, request: web.Request) -> web.Response:
        limit = request.query.get("limit", "")
        entries = self.responder.requests(request.query.get("email"),
                                          int(limit) if limit.isdigit() else None)
        return _json(entries)

    async def _stats(self, _: web.Request) -> web.Response:
        return _json(self.responder.stats())

    async def _reset(self, _: web.Request) -> web.Response:
        await self.reset()
        return _json(self.responder.config())

    async def _control(self, request: web.Request,
                       apply: Callable[[dict[str, Any]], Awaitable[None]]) -> web.Response:
        try:
            raw = await request.read()
            data = orjson.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise ControlError("the body must be a JSON object")
            await apply(data)
        except ValueError as error:  # JSONDecodeError and ControlError are ValueErrors
            return web.Response(body=error_body("params_invalid", str(error)), status=400,
                                content_type="application/json")
        return _json(self.responder.config())


async def _stream(request: web.Request, reply: Reply,
                  headers: Mapping[str, str]) -> web.StreamResponse:
    """The body a byte at a time (``drip``) or in chunks without a Content-Length."""
    response = web.StreamResponse(status=reply.status, headers=headers)
    if reply.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(reply.body)
    await response.prepare(request)
    body = memoryview(reply.body)
    step = 1 if reply.drip else STREAM_CHUNK
    try:
        for start in range(0, len(body), step):
            await response.write(bytes(body[start:start + step]))
            if reply.drip:
                await asyncio.sleep(reply.drip)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client gave up reading: what the drip or the size is there to test
    return response


def _json(value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type="application/json")


class ClearbitServer:
    """The server on its own event loop in a background thread, for tests and benchmarks.

    ``with ClearbitServer() as server:`` starts it on a free port (``server.url``);
    the methods mirror the control API and are safe to call from any other thread.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, key: str = DEFAULT_KEY,
                 latency_ms: float = 0.0, rate_limit_per_minute: int = 0,
                 retry_after: bool = False, quota_exhausted: bool = False,
                 outage: OutageMode = "off", outage_status: int = 503,
                 log_size: int = DEFAULT_LOG_SIZE, rules: Mapping[str, Rule] | None = None,
                 flavor: str = "clearbit") -> None:
        self.settings = ServerSettings(
            key=key, latency_ms=latency_ms, rate_limit_per_minute=rate_limit_per_minute,
            retry_after=retry_after, quota_exhausted=quota_exhausted, outage=outage,
            outage_status=outage_status, log_size=log_size, rules=dict(rules or {}),
            flavor=flavor)
        self._host, self._port = host, port
        self._service: ClearbitService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Start listening; the base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        self._service = ClearbitService(self.settings)
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,),
                                        name="clearbit-server", daemon=True)
        self._thread.start()
        try:
            self.url = ready.result(timeout=30)
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self.url

    def stop(self) -> None:
        """Close every connection and the loop; waits at most about a second."""
        if self._thread is None or self._loop is None or self._service is None:
            return
        asyncio.run_coroutine_threadsafe(self._service.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> ClearbitServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # The control API, as methods.

    def set_rule(self, email: str, status: int | None = None, *, delay_ms: float = 0.0,
                 times: int | None = None, body: Any = None,
                 headers: Mapping[str, str] | None = None,
                 content_type: str | None = None, size: int | None = None,
                 encoding: str | None = None, drip_ms: float = 0.0,
                 chunked: bool = False) -> None:
        rule = Rule(status, delay_ms, times, body, dict(headers or {}), content_type, size,
                    encoding, drip_ms, chunked)
        self._call(lambda b: b.set_rule(email, rule))

    def clear_rules(self, email: str | None = None) -> None:
        self._call(lambda b: b.clear_rules(email))

    def rules(self) -> dict[str, dict[str, Any]]:
        return self._call(lambda b: cast(dict[str, dict[str, Any]], b.config()["rules"]))

    def set_latency(self, latency_ms: float) -> None:
        self._call(lambda b: b.set_latency(latency_ms))

    def set_rate_limit(self, per_minute: int, *, retry_after: bool = False) -> None:
        self._call(lambda b: b.set_rate_limit(per_minute, retry_after))

    def force_429(self, seconds: float, *, retry_after: bool = False) -> None:
        self._call(lambda b: b.force_429(seconds, retry_after))

    def set_quota_exhausted(self, exhausted: bool = True) -> None:
        self._call(lambda b: b.set_quota_exhausted(exhausted))

    def set_outage(self, mode: OutageMode, *, status: int = 503,
                   seconds: float | None = None) -> None:
        self._await(lambda s: s.set_outage(mode, status, seconds))

    def requests(self, email: str | None = None, limit: int | None = None) -> list[RequestEntry]:
        return self._call(lambda b: b.requests(email, limit))

    def stats(self) -> Stats:
        return self._call(lambda b: b.stats())

    def config(self) -> dict[str, Any]:
        return self._call(lambda b: b.config())

    def reset(self) -> None:
        self._await(lambda s: s.reset())

    def _call(self, action: Callable[[Responder], T]) -> T:
        """Run ``action`` on the server's loop: the responder is only touched from there."""
        async def run(service: ClearbitService) -> T:
            return action(service.responder)
        return self._await(run)

    def _await(self, action: Callable[[ClearbitService], Awaitable[T]]) -> T:
        if self._loop is None or self._service is None or self._thread is None:
            raise RuntimeError("the server is not running: call start() first")
        service = self._service

        async def run() -> T:
            return await action(service)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def _serve(self, ready: concurrent.futures.Future[str]) -> None:
        loop, service = self._loop, self._service
        if loop is None or service is None:
            raise RuntimeError("start() creates the loop and the service first")
        asyncio.set_event_loop(loop)
        try:
            try:
                ready.set_result(loop.run_until_complete(service.start(self._host, self._port)))
            except Exception as error:  # noqa: BLE001 - handed to start(), which raises it
                ready.set_exception(error)
                loop.run_until_complete(service.close())
                return
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m processor.devkit.clearbit_server",
        description="A Clearbit-compatible Enrichment API server for local runs and tests. "
                    "Prints its base URL on one line when ready; stop it with SIGTERM or Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the accepted secret key")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="added to every lookup (default: %(default)s)")
    parser.add_argument("--rate-limit-per-minute", type=int, default=0,
                        help="sliding 60 s window; 0: no limit")
    parser.add_argument("--retry-after", action="store_true",
                        help="send Retry-After on rate-limit 429s (Clearbit was not seen to)")
    parser.add_argument("--quota-exhausted", action="store_true", help="answer 402 to lookups")
    parser.add_argument("--outage", choices=OUTAGE_MODES, default="off",
                        help="start in this outage mode")
    parser.add_argument("--outage-status", type=int, default=503,
                        help="the status of --outage status")
    parser.add_argument("--flavor", choices=FLAVORS, default="clearbit",
                        help="answer as Clearbit, or as Hunter's combined endpoint does")
    parser.add_argument("--log-size", type=int, default=DEFAULT_LOG_SIZE,
                        help="request-log entries kept (counts are kept for all)")
    parser.add_argument("--rule", action="append", default=[], metavar="JSON", type=_rule_arg,
                        help='a per-email rule, as POST /_control/rules takes it, e.g. '
                             '\'{"email": "a@b.example", "status": 404, "times": 2}\'')
    args = parser.parse_args(argv)
    try:
        args.settings = ServerSettings(
            key=args.key, latency_ms=args.latency_ms,
            rate_limit_per_minute=args.rate_limit_per_minute, retry_after=args.retry_after,
            quota_exhausted=args.quota_exhausted, outage=args.outage,
            outage_status=args.outage_status, log_size=args.log_size, rules=dict(args.rule),
            flavor=args.flavor)
    except ValueError as error:
        parser.error(str(error))
    return args


def _rule_arg(text: str) -> tuple[str, Rule]:
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a rule is a JSON object")
        return Rule.from_json(data)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


async def _serve_until_signalled(settings: ServerSettings, host: str, port: int) -> None:
    service = ClearbitService(settings)
    print(await service.start(host, port), flush=True)  # the ready line callers wait for
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await service.close()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve_until_signalled(args.settings, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
