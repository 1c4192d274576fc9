"""What every stage's command does around its stage: check before starting, serve
metrics and lag while it runs, stop them after it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from processor.core.errors import ProcessorError
from processor.runtime.signals import StopRequest

log = logging.getLogger("processor")


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class _Runnable(Protocol):
    def run(self) -> None: ...


def checked(preflight: Callable[[], None], stop: StopRequest) -> bool:
    """Run the start-up checks; False when a stop was asked for meanwhile (then a
    failing check is only logged: the stop is what happens)."""
    if not stop.event.is_set():
        try:
            preflight()
        except ProcessorError as error:
            if not stop.event.is_set():
                raise
            log.warning("stopping before starting; the start would have failed: %s", error)
    if stop.event.is_set():
        log.info("stopped before starting")
        return False
    return True


def run_stage(stage: _Runnable, services: list[_Service | None]) -> int:
    """Start ``services`` (metrics, lag), run the stage until it stops, stop them."""
    started = [s for s in services if s is not None]
    for service in started:
        service.start()
    try:
        stage.run()
    finally:
        for service in reversed(started):
            service.stop()
    log.info("stopped cleanly")
    return 0
