"""What the Meta- and Google-compatible servers share: scripted faults, the request log, a
settable clock, per-minute limits, the control API and a port that can refuse
(``processor.devkit.api_double_runner`` runs it in a thread for tests, or as a command).

A *platform* (``meta_server.MetaPlatform``, ``google_server.GooglePlatform``) knows its API:
its routes, how it answers, how a scripted fault looks in its error vocabulary, and the
events it accepted. This module knows neither vocabulary.

An API request goes through, first answer wins: the request-level faults (by request number
or time window), the per-minute limit of its API, then the platform, which authenticates,
reads the body, asks for faults by event id (``Call.fault_for``) and validates. The latency
and any fault delay are then awaited with ``asyncio.sleep``, so a slow answer holds up no
other; a status of 0 closes the connection unanswered.

Control API (JSON, no auth), the same on both servers::

    GET    /_health     {"ok": true}
    GET    /_config     the knobs, never a secret
    GET    /_log        the request log, oldest first; ?api= and ?limit=
    GET    /_events     the unique accepted events (filters: see each platform)
    POST   /_reset      back to the start configuration: log, events and faults cleared
    POST   /_script     any of {"faults": [fault, ...]} (appended), "clear_faults": true,
                        "latency_ms", "refuse_seconds", "clock_offset_seconds",
                        "advance_clock_seconds", "rate_limits": {api: per_minute},
                        and the platform's own knobs
    DELETE /_script     drop every fault

A fault says what to answer: ``status`` (0: close the connection), Meta's ``code``,
``error_subcode`` and ``is_transient``, Google's ``reason``, ``message``, ``retry_after``
(seconds, a header), ``delay_ms``; and which requests: ``event_ids`` (any of them in the
request), ``request`` (the Nth request of ``api``, or of the server without ``api``, counted
from 1 since start or reset), ``seconds`` (a window starting now), ``api``; ``times`` caps
how many requests it answers. Without any of status, code and reason it only delays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson
from aiohttp import web

from processor.devkit.clearbit_server import SlidingWindow

log = logging.getLogger(__name__)

DEFAULT_LOG_SIZE = 100_000
JSON_TYPE = "application/json; charset=utf-8"
# Query parameters the log leaves out, whatever the platform: they carry credentials.
SECRET_PARAM = re.compile(r"token|secret|key|password|code", re.IGNORECASE)


class Reply(NamedTuple):
    status: int  # 0: close the connection unanswered
    body: bytes = b""
    headers: Mapping[str, str] = {}
    cause: str = "ok"


def json_reply(status: int, value: Any, cause: str = "ok",
               headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(value), headers or {}, cause)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _int_or_none(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    _check(value is None or (isinstance(value, int) and not isinstance(value, bool)),
           f"{name} must be an integer or null")
    return value


def _number(data: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = data.get(name, default)
    _check(isinstance(value, int | float) and not isinstance(value, bool),
           f"{name} must be a number")
    return float(value)


def _str_or_none(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    _check(value is None or isinstance(value, str), f"{name} must be a string or null")
    return value


@dataclasses.dataclass(frozen=True)
class Fault:
    """A scripted answer and the requests it is for (see the module docstring)."""

    status: int | None = None
    code: int | None = None
    error_subcode: int | None = None
    is_transient: bool | None = None
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None
    delay_ms: float = 0.0
    event_ids: frozenset[str] = frozenset()
    request: int | None = None
    seconds: float | None = None
    api: str | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        _check(self.status is None or self.status == 0 or 200 <= self.status <= 599,
               f"status must be 0 or an HTTP status, not {self.status}")
        _check(self.delay_ms >= 0 and (self.times is None or self.times >= 1)
               and (self.request is None or self.request >= 1)
               and (self.seconds is None or self.seconds > 0),
               "delay_ms must be >= 0; times and request >= 1; seconds > 0 (or null)")

    @property
    def answers(self) -> bool:
        return self.status is not None or self.code is not None or self.reason is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        _check(isinstance(data, Mapping), "a fault is a JSON object")
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        _check(not unknown, f"unknown fault fields: {sorted(unknown)}")
        ids = data.get("event_ids") or []
        _check(isinstance(ids, list) and all(isinstance(i, str) for i in ids),
               "event_ids must be a list of strings")
        transient = data.get("is_transient")
        _check(transient is None or isinstance(transient, bool), "is_transient must be a bool")
        seconds = data.get("seconds")
        return cls(
            status=_int_or_none(data, "status"), code=_int_or_none(data, "code"),
            error_subcode=_int_or_none(data, "error_subcode"), is_transient=transient,
            reason=_str_or_none(data, "reason"), message=_str_or_none(data, "message"),
            retry_after=_int_or_none(data, "retry_after"),
            delay_ms=_number(data, "delay_ms"), event_ids=frozenset(ids),
            request=_int_or_none(data, "request"),
            seconds=None if seconds is None else _number(data, "seconds"),
            api=_str_or_none(data, "api"), times=_int_or_none(data, "times"))

    def to_json(self) -> dict[str, Any]:
        fields = {**dataclasses.asdict(self), "event_ids": sorted(self.event_ids) or None,
                  "delay_ms": self.delay_ms or None}
        return {name: value for name, value in fields.items() if value is not None}


@dataclasses.dataclass
class _Armed:
    fault: Fault
    until: float | None  # monotonic end of the window
    left: int | None


class Script:
    """The faults in force, in the order they were added; the first that matches answers."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def add(self, fault: Fault, now: float) -> None:
        until = None if fault.seconds is None else now + fault.seconds
        self._armed.append(_Armed(fault, until, fault.times))

    def clear(self) -> None:
        self._armed.clear()

    def faults(self, now: float) -> list[dict[str, Any]]:
        return [{**a.fault.to_json(), "times_left": a.left,
                 "seconds_left": None if a.until is None else max(0.0, a.until - now)}
                for a in self._live(now)]

    def match(self, api: str, numbers: tuple[int, int], now: float,
              event_ids: Iterable[str] | None) -> tuple[Fault | None, float]:
        """The first answering fault for this request (or for these event ids), and the
        delay of every matching fault up to it. ``numbers``: (of the server, of the api)."""
        ids = None if event_ids is None else set(event_ids)
        delay = 0.0
        for armed in self._live(now):
            fault = armed.fault
            if not _selects(fault, api, numbers, ids):
                continue
            if armed.left is not None:
                armed.left -= 1
            delay += fault.delay_ms / 1000
            if fault.answers:
                return fault, delay
        return None, delay

    def _live(self, now: float) -> list[_Armed]:
        self._armed = [a for a in self._armed if (a.until is None or a.until > now)
                       and (a.left is None or a.left > 0)]
        return self._armed


def _selects(fault: Fault, api: str, numbers: tuple[int, int], ids: set[str] | None) -> bool:
    if fault.api is not None and fault.api != api:
        return False
    if fault.request is not None and fault.request != numbers[fault.api is not None]:
        return False
    # Request-level faults are matched before the body is read, event-id faults after.
    return not fault.event_ids if ids is None else bool(fault.event_ids & ids)


class Clock:
    """The server's idea of now: the real time plus an offset tests can move."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


@dataclasses.dataclass
class Call:
    """One API request as a platform sees it; ``log`` collects what the log line adds."""

    seq: int
    number: int
    api: str
    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    now: float
    mono: float
    script: Script
    delay: float = 0.0
    log: dict[str, Any] = dataclasses.field(default_factory=dict)

    def fault_for(self, event_ids: Iterable[str]) -> Fault | None:
        """The first answering fault scripted for any of these event ids (delays add up)."""
        fault, delay = self.script.match(self.api, (self.seq, self.number), self.mono,
                                         list(event_ids))
        self.delay += delay
        return fault

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return orjson.loads(self.body)


class Platform(Protocol):
    """What a fake API adds to this machinery."""

    @property
    def name(self) -> str: ...
    @property
    def routes(self) -> Sequence[tuple[str, str, str]]:
        """(method, aiohttp path, API name) of each API route."""
    @property
    def throttle(self) -> Fault:
        """The answer of the per-minute limit."""

    def handle(self, call: Call) -> Reply: ...
    def render(self, call: Call, fault: Fault) -> Reply: ...
    def events(self, query: Mapping[str, str]) -> list[dict[str, Any]]: ...
    def configure(self, knobs: dict[str, Any]) -> None:
        """Take the knobs it knows out of ``knobs`` (ValueError if one is bad)."""
    def config(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...


PlatformT = TypeVar("PlatformT", bound=Platform)


@dataclasses.dataclass(frozen=True)
class DoubleSettings:
    """The machinery's start configuration; ``reset`` returns to it."""

    latency_ms: float = 0.0
    clock_offset: float = 0.0
    rate_limits: Mapping[str, int] = dataclasses.field(default_factory=dict)
    log_size: int = DEFAULT_LOG_SIZE
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        _check(self.latency_ms >= 0 and self.log_size >= 0
               and all(n >= 0 for n in self.rate_limits.values()),
               "latency_ms, log_size and rate limits must be >= 0")


class DoubleService(Generic[PlatformT]):
    """The aiohttp application around a platform, on whatever loop starts it."""

    def __init__(self, platform: PlatformT, settings: DoubleSettings) -> None:
        self.platform, self.settings = platform, settings
        self.script = Script()
        self.clock = Clock()
        self.log: deque[dict[str, Any]] = deque(maxlen=settings.log_size)
        self.latency = 0.0
        self.rate_limits: dict[str, int] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self._seq = 0
        self._numbers: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host, self._port = "127.0.0.1", 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.get("/_health", self._health), web.get("/_config", self._config),
            web.get("/_log", self._log), web.get("/_events", self._events),
            web.post("/_reset", self._reset), web.post("/_script", self._script),
            web.delete("/_script", self._clear),
            *(web.route(method, path, self._handler(api))
              for method, path, api in self.platform.routes),
            web.route("*", "/{tail:.*}", self._handler("unknown")),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._host, self._port = host, port
        await self._listen()
        log.info("%s-compatible server listening on %s", self.platform.name, self.url)
        return self.url

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Knobs, all called on the service's loop.

    def reset(self) -> None:
        self.platform.reset()
        self._restart()

    def _restart(self) -> None:
        settings = self.settings
        self.script.clear()
        now = time.monotonic()
        for fault in settings.faults:
            self.script.add(fault, now)
        self.clock.offset = settings.clock_offset
        self.latency = settings.latency_ms / 1000
        self.rate_limits = dict(settings.rate_limits)
        self._windows.clear()
        self.log.clear()
        self._seq = 0
        self._numbers.clear()

    def add_fault(self, fault: Fault) -> None:
        self.script.add(fault, time.monotonic())

    def set_latency(self, latency_ms: float) -> None:
        _check(latency_ms >= 0, "latency_ms must be >= 0")
        self.latency = latency_ms / 1000

    def set_rate_limit(self, api: str, per_minute: int) -> None:
        _check(per_minute >= 0, "a rate limit must be >= 0 (0: none)")
        self.rate_limits[api] = per_minute

    async def refuse(self, seconds: float | None = None) -> None:
        """Close the port (connections are refused); with ``seconds``, open it after that."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if seconds:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._reopen)
        log.info("refusing connections (seconds %s)", seconds)

    async def accept(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._site is None:
            await self._listen()

    def config(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"latency_ms": self.latency * 1000, "clock_offset_seconds": self.clock.offset,
                "rate_limits": dict(self.rate_limits), "refusing": self._site is None,
                "log_size": self.settings.log_size, "faults": self.script.faults(now),
                **self.platform.config()}

    def requests(self, api: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        lines = [line for line in self.log if api is None or line["api"] == api]
        return lines[-limit:] if limit else lines

    async def apply(self, knobs: dict[str, Any]) -> None:
        """Follow a ``POST /_script`` body (ValueError when one of its knobs is bad)."""
        knobs = dict(knobs)
        if knobs.pop("clear_faults", False):
            self.script.clear()
        faults = knobs.pop("faults", [])
        _check(isinstance(faults, list), "faults must be a list")
        for fault in [Fault.from_json(item) for item in faults]:
            self.add_fault(fault)
        if "latency_ms" in knobs:
            self.set_latency(_number(knobs, "latency_ms"))
        if "clock_offset_seconds" in knobs:
            self.clock.offset = _number(knobs, "clock_offset_seconds")
        self.clock.offset += _number(knobs, "advance_clock_seconds")
        limits = knobs.pop("rate_limits", {})
        _check(isinstance(limits, dict), "rate_limits must be an object")
        for api, per_minute in limits.items():
            _check(isinstance(per_minute, int), "a rate limit must be an integer")
            self.set_rate_limit(api, per_minute)
        if "refuse_seconds" in knobs:
            _check(_number(knobs, "refuse_seconds") > 0, "refuse_seconds must be > 0: over "
                   "HTTP the port must open again by itself")
            await self.refuse(_number(knobs, "refuse_seconds"))
        for name in ("latency_ms", "clock_offset_seconds", "advance_clock_seconds",
                     "refuse_seconds"):
            knobs.pop(name, None)
        self.platform.configure(knobs)
        _check(not knobs, f"unknown knobs: {sorted(knobs)}")

    # The API path.

    def _handler(self, api: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._answer(api, request)
        return handle

    async def _answer(self, api: str, request: web.Request) -> web.StreamResponse:
        self._seq += 1
        number = self._numbers[api] = self._numbers.get(api, 0) + 1
        body = await request.read()
        mono = time.monotonic()
        call = Call(self._seq, number, api, request.method, request.path,
                    dict(request.match_info), request.query, request.headers, body,
                    self.clock.now(), mono, self.script)
        fault, call.delay = self.script.match(api, (call.seq, number), mono, None)
        if fault is not None:
            reply = scripted_reply(self.platform, call, fault)
        else:
            reply = self._limited(call) or self.platform.handle(call)
        self.log.append({
            "seq": call.seq, "number": number, "api": api, "time": time.time(),
            "clock": call.now, "method": call.method, "path": call.path,
            "query": {k: v for k, v in call.query.items() if not SECRET_PARAM.search(k)},
            "status": reply.status, "cause": reply.cause, **call.log})
        if reply.status == 0:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)  # never sent: the connection is gone
        if call.delay + self.latency > 0:
            await asyncio.sleep(call.delay + self.latency)
        return web.Response(body=reply.body, status=reply.status,
                            headers={"Content-Type": JSON_TYPE, **reply.headers})

    def _limited(self, call: Call) -> Reply | None:
        limit = self.rate_limits.get(call.api, 0)
        if not limit:
            return None
        window = self._windows.setdefault(call.api, SlidingWindow())
        if window.count(call.mono) < limit:
            window.add(call.mono)
            return None
        reply = self.platform.render(call, self.platform.throttle)._replace(cause="rate_limit")
        return _with_retry_after(reply, max(1, math.ceil(window.frees_in(call.mono))))

    async def _listen(self) -> None:
        if self._runner is None:
            raise RuntimeError("start() sets the runner up first")
        self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await self._site.start()
        if self._port == 0:
            self._port = int(self._runner.addresses[0][1])

    def _reopen(self) -> None:
        task = asyncio.ensure_future(self.accept())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Control routes.

    async def _health(self, _: web.Request) -> web.Response:
        return _json({"ok": True})

    async def _config(self, _: web.Request) -> web.Response:
        return _json(self.config())

    async def _log(self, request: web.Request) -> web.Response:
        limit = request.query.get("limit", "")
        return _json(self.requests(request.query.get("api"),
                                   int(limit) if limit.isdigit() else None))

    async def _events(self, request: web.Request) -> web.Response:
        return _json(self.platform.events(request.query))

    async def _reset(self, _: web.Request) -> web.Response:
        self.reset()
        await self.accept()
        return _json(self.config())

    async def _clear(self, _: web.Request) -> web.Response:
        self.script.clear()
        return _json(self.config())

    async def _script(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
            data = orjson.loads(raw) if raw.strip() else {}
            _check(isinstance(data, dict), "the body must be a JSON object")
            await self.apply(data)
        except ValueError as error:  # JSONDecodeError too
            return _json({"error": {"message": str(error)}}, status=400)
        return _json(self.config())


def scripted_reply(platform: Platform, call: Call, fault: Fault) -> Reply:
    """A fault's answer: the platform's error shape, or the connection closed (status 0)."""
    if fault.status == 0:
        return Reply(0, cause="scripted")
    reply = platform.render(call, fault)._replace(cause="scripted")
    return _with_retry_after(reply, fault.retry_after)


def _with_retry_after(reply: Reply, seconds: int | None) -> Reply:
    if seconds is None:
        return reply
    return reply._replace(headers={**reply.headers, "Retry-After": str(seconds)})


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")
