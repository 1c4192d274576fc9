"""Stopping an asyncio loop that runs in a thread of its own (the lookup and delivery pools)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                     shutdown: Coroutine[Any, Any, None], timeout: float, what: str) -> None:
    """Run ``shutdown`` on ``loop`` (cancel work, close clients), then stop the loop and
    join its thread, each within ``timeout``; a shutdown that fails is logged."""
    if not thread.is_alive():
        shutdown.close()  # never scheduled: no "coroutine was never awaited"
        return
    future = asyncio.run_coroutine_threadsafe(shutdown, loop)
    try:
        future.result(timeout)
    except Exception:
        log.warning("%s did not close cleanly", what, exc_info=True)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
