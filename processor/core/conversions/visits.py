"""The browser context Meta asks for with a website event: IP, user agent, page URL.

Meta requires ``client_user_agent`` and ``event_source_url`` for ``action_source:
website`` and matches better with ``client_ip_address``; they come from the visitor's
last web event. The page URL is kept without its query and fragment: those carry form
fields (``?email=``) often enough, and no raw email may reach a store or a topic; a
path with an ``@`` in it (``/users/ada@example.com``) is cut down to the site for the
same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from processor.core.conversions.clicks import observation_ms

MAX_FIELD_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class Visit:
    """The last known browser context of a visitor; each field may be unknown."""

    ip: str | None
    user_agent: str | None
    page_url: str | None
    observed_at_ms: int

    def newer(self, other: Visit | None) -> Visit:
        """The newer of the two; a field the newer one lacks is taken from the older."""
        if other is None:
            return self
        new, old = (other, self) if other.observed_at_ms > self.observed_at_ms else (self, other)
        return Visit(new.ip or old.ip, new.user_agent or old.user_agent,
                     new.page_url or old.page_url, new.observed_at_ms)

    def to_json(self) -> list[Any]:
        """Compact store form: ``[ip, user_agent, page_url, observed ms]``."""
        return [self.ip, self.user_agent, self.page_url, self.observed_at_ms]

    @classmethod
    def from_json(cls, data: Any) -> Visit | None:
        """The visit from ``to_json``'s form, or None when ``data`` does not fit it."""
        if not (isinstance(data, list) and len(data) == 4 and type(data[3]) is int):
            return None
        ip, agent, url = (_text(v) for v in data[:3])
        return cls(ip, agent, page_url(url) if url else None, data[3])


def _text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_FIELD_LENGTH and value.strip():
        return value
    return None


def page_url(url: str) -> str | None:
    """``url`` without credentials, query and fragment, when it is an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = "/" if "@" in parts.path or "%40" in parts.path.lower() else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def visit_of(event: Any, record_time_ms: int) -> Visit | None:
    """The browser context ``event`` carries (``context.ip``, ``context.userAgent``,
    ``context.page.url`` else ``properties.url``), or None when it carries none."""
    if not isinstance(event, dict):
        return None
    context = event.get("context")
    context = context if isinstance(context, Mapping) else {}
    page = context.get("page")
    properties = event.get("properties")
    candidates = (page.get("url") if isinstance(page, Mapping) else None,
                  properties.get("url") if isinstance(properties, Mapping) else None)
    url = next((u for c in candidates if (t := _text(c)) and (u := page_url(t))), None)
    ip, agent = _text(context.get("ip")), _text(context.get("userAgent"))
    if ip is None and agent is None and url is None:
        return None
    return Visit(ip, agent, url, observation_ms(event, record_time_ms))
