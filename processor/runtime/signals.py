"""Stop requests from SIGTERM/SIGINT, installed before anything else starts.

Standard library only and cheap to import: ``processor.entrypoints.console`` hands it
the signals that arrived while the command was starting, before the heavier imports
(pydantic, confluent-kafka), so a SIGTERM at any moment is a clean stop (exit 0).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class StopRequest:
    """The first request asks for a graceful stop, a second for an immediate one."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.urgent = False

    def request(self) -> None:
        if self.event.is_set():
            self.urgent = True
        self.event.set()

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.request()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
