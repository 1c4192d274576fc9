"""Runs an API double (``processor.devkit.api_double``): in a background thread for tests
(``DoubleServer``, which the Meta and Google servers subclass), or as a command that prints
its base URL when ready and stops on SIGTERM or SIGINT (``command_main``), with the
command-line options every fake server shares.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import orjson

from processor.devkit.api_double import (
    DEFAULT_LOG_SIZE,
    DoubleService,
    DoubleSettings,
    Fault,
    Platform,
    PlatformT,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


async def run_service(service: DoubleService[Any], host: str, port: int, stop: asyncio.Event,
                      ready: Callable[[str], None]) -> None:
    """Serve until ``stop`` is set, telling ``ready`` the base URL once listening."""
    try:
        ready(await service.start(host, port))
        await stop.wait()
    finally:
        await service.close()


class DoubleServer(Generic[PlatformT]):
    """A service on its own event loop in a background thread, for tests.

    ``with MetaServer() as server:`` starts it on a free port (``server.url``); the methods
    mirror the control API and are safe to call from any thread.
    """

    def __init__(self, platform: PlatformT, settings: DoubleSettings, host: str,
                 port: int) -> None:
        self._platform, self.settings = platform, settings
        self._host, self._port = host, port
        self._service: DoubleService[PlatformT] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Start listening; the base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name=f"{self._platform.name.lower()}-server")
        self._thread.start()
        try:
            self.url = ready.result(timeout=30)
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self.url

    def stop(self) -> None:
        """Close every connection (requests in flight are dropped) and the loop."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # The control API, as methods.

    def fail(self, status: int | None = None, *, code: int | None = None,
             error_subcode: int | None = None, is_transient: bool | None = None,
             reason: str | None = None, message: str | None = None,
             retry_after: int | None = None, delay_ms: float = 0.0,
             event_ids: Iterable[str] = (), request: int | None = None,
             seconds: float | None = None, api: str | None = None,
             times: int | None = None) -> None:
        """Script a fault (see the module docstring); faults stack, the first match wins."""
        fault = Fault(status, code, error_subcode, is_transient, reason, message, retry_after,
                      delay_ms, frozenset(event_ids), request, seconds, api, times)
        self._call(lambda s: s.add_fault(fault))

    def clear_faults(self) -> None:
        self._call(lambda s: s.script.clear())

    def set_latency(self, latency_ms: float) -> None:
        self._call(lambda s: s.set_latency(latency_ms))

    def set_rate_limit(self, api: str, per_minute: int) -> None:
        self._call(lambda s: s.set_rate_limit(api, per_minute))

    def refuse(self, seconds: float | None = None) -> None:
        self._await(lambda s: s.refuse(seconds))

    def accept(self) -> None:
        self._await(lambda s: s.accept())

    def set_clock_offset(self, seconds: float) -> None:
        def move(service: DoubleService[PlatformT]) -> None:
            service.clock.offset = seconds
        self._call(move)

    def advance_clock(self, seconds: float) -> None:
        def move(service: DoubleService[PlatformT]) -> None:
            service.clock.offset += seconds
        self._call(move)

    def script(self, **knobs: Any) -> dict[str, Any]:
        """Apply a ``POST /_script`` body; the new configuration."""
        async def apply(service: DoubleService[PlatformT]) -> dict[str, Any]:
            await service.apply(knobs)
            return service.config()
        return self._await(apply)

    def requests(self, api: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        return self._call(lambda s: s.requests(api, limit))

    def config(self) -> dict[str, Any]:
        return self._call(lambda s: s.config())

    def reset(self) -> None:
        async def reset(service: DoubleService[PlatformT]) -> None:
            service.reset()
            await service.accept()
        self._await(reset)

    def _events(self, **query: str) -> list[dict[str, Any]]:
        return self._call(lambda s: s.platform.events(query))

    def _call(self, action: Callable[[DoubleService[PlatformT]], T]) -> T:
        """Run ``action`` on the server's loop: the service is only touched from there."""
        async def run(service: DoubleService[PlatformT]) -> T:
            return action(service)
        return self._await(run)

    def _await(self, action: Callable[[DoubleService[PlatformT]], Coroutine[Any, Any, T]]) -> T:
        if self._loop is None or self._service is None or self._thread is None:
            raise RuntimeError("the server is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(action(self._service),
                                                self._loop).result(timeout=30)

    def _serve(self, ready: concurrent.futures.Future[str]) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._service = DoubleService(self._platform, self.settings)
            await run_service(self._service, self._host, self._port, self._stop,
                              ready.set_result)
        try:
            asyncio.run(main())
        except Exception as error:  # handed to start(), which raises it, or logged
            if not ready.done():
                ready.set_exception(error)
            else:
                log.exception("the %s server failed", self._platform.name)


def add_double_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every fake server has."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: "
                        "%(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="added to every API answer (default: %(default)s)")
    parser.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                        help="the server's clock runs this far ahead (negative: behind)")
    parser.add_argument("--rate-limit", action="append", default=[], metavar="API=N",
                        type=_rate_limit_arg, help="requests per minute of one API")
    parser.add_argument("--log-size", type=int, default=DEFAULT_LOG_SIZE,
                        help="request-log entries kept (default: %(default)s)")
    parser.add_argument("--fault", action="append", default=[], metavar="JSON",
                        type=_fault_arg, help='a scripted fault, as POST /_script takes it, '
                        'e.g. \'{"status": 503, "request": 2}\'')


def double_settings(args: argparse.Namespace) -> DoubleSettings:
    return DoubleSettings(latency_ms=args.latency_ms, clock_offset=args.clock_offset,
                          rate_limits=dict(args.rate_limit), log_size=args.log_size,
                          faults=tuple(args.fault))


def _rate_limit_arg(text: str) -> tuple[str, int]:
    api, _, number = text.partition("=")
    if not api or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected API=N, e.g. datamanager=300")
    return api, int(number)


def _fault_arg(text: str) -> Fault:
    try:
        return Fault.from_json(orjson.loads(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def command_main(argv: Sequence[str] | None, *, prog: str, description: str,
                 add_arguments: Callable[[argparse.ArgumentParser], None],
                 platform: Callable[[argparse.Namespace], Platform]) -> int:
    """A fake server's command line: the shared options and ``add_arguments``'s, the
    platform built from them (a ValueError is a usage error), then serve: log to stderr,
    print the base URL when ready, stop on SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{description} Prints its base "
                                     "URL on one line when ready; stop it with SIGTERM or "
                                     "Ctrl-C.")
    add_double_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        service = DoubleService(platform(args), double_settings(args))
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_service(service, args.host, args.port, stop,
                          lambda url: print(url, flush=True))
        log.info("stopped")
    asyncio.run(main())
    return 0
