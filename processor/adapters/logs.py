"""Log output: JSON lines in production, readable lines on a terminal.

Modules log through the standard library (``logging.getLogger(__name__)``
with lazy ``%`` arguments); structlog only renders the records, so there is a
single logging path. Every message passes through ``redact`` on its way out,
as a last line of defence against an email address or a key in a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from processor.core.redact import redact


def _scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for field in ("event", "exception"):
        if isinstance(event.get(field), str):
            event[field] = redact(event[field])
    return event


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up the root logger once, at start. ``fmt``: auto, json or console."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and the URL carries the email.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
