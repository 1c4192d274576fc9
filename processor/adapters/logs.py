"""Log output: JSON lines in production, readable lines on a terminal.

Modules log through the standard library (``logging.getLogger(__name__)``
with lazy ``%`` arguments); structlog only renders the records, so there is a
single logging path. A ``structlog.get_logger()`` logger, should one appear,
is routed through the same handler rather than printing on its own.

Every string that leaves, the message, its arguments, a traceback or any
key-value field, passes through ``redact`` on its way out: a last line of
defence against an email address or a key in a log line. To name a record,
log ``processor.core.redact.email_hash(email)``, never the email itself.

One JSON object per line carries ``timestamp`` (ISO-8601 UTC), ``level``,
``logger`` and ``event`` (the message), plus ``exception`` when there is one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from processor.core.redact import redact

# Fields we write ourselves: nothing in them comes from a record or a provider.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})


def _scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for field, value in event.items():
        if field not in _OWN_FIELDS and isinstance(value, str):
            event[field] = redact(value)
    return event


def _renderer(fmt: str, stream: TextIO) -> Any:
    on_terminal = stream.isatty()
    if fmt == "json" or (fmt == "auto" and not on_terminal):
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=on_terminal)


def configure(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up the root logger once, at start. ``fmt``: auto (JSON unless ``stream`` is a
    terminal), json or console; ``stream`` defaults to standard error."""
    out = stream if stream is not None else sys.stderr
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
            _renderer(fmt, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # httpx logs every request URL at INFO, and the URL carries the email.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
