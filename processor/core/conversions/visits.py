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
from functools import lru_cache
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
        return cls.from_fields(*data)

    @classmethod
    def from_fields(cls, ip: Any, user_agent: Any, url: Any, observed_at_ms: int) -> Visit:
        """The visit of ``to_json``'s four fields, each checked as a new event's would be
        (a URL's query and an email in its path are never kept)."""
        url = _text(url)
        return cls(_text(ip), _text(user_agent), page_url(url) if url else None,
                   observed_at_ms)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_FIELD_LENGTH and value.strip():
        return value
    return None


def page_url(url: str) -> str | None:
    """``url`` without credentials, query and fragment, when it is an http(s) URL."""
    text = url.strip()
    # What precedes the first "?" or "#" splits into the same scheme, host and path as
    # the whole URL does, and without the query a site's few pages come again and again.
    query, fragment = text.find("?"), text.find("#")
    end = min(query, fragment) if query >= 0 and fragment >= 0 else max(query, fragment)
    site = text[:end] if end >= 0 else text
    # "%40" has no case: no lowering needed to find it.
    if "@" in site or "%40" in site:
        return _site_and_path(site)  # credentials or an email: not kept, even in memory
    return _known_site_and_path(site)


def _site_and_path(text: str) -> str | None:
    try:
        parts = urlsplit(text)
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


# Most page events, and every visit read back from a store or a message, find theirs here.
_known_site_and_path = lru_cache(maxsize=2048)(_site_and_path)


def visit_of(event: Any, record_time_ms: int, observed_at_ms: int | None = None
             ) -> Visit | None:
    """The browser context ``event`` carries (``context.ip``, ``context.userAgent``,
    ``context.page.url`` else ``properties.url``), or None when it carries none.
    ``observed_at_ms`` is ``observation_ms(event, record_time_ms)`` when the caller has
    it already (its clicks are stamped with it)."""
    if not isinstance(event, dict):
        return None
    context = event.get("context")
    if type(context) is not dict and not isinstance(context, Mapping):
        context = _NOTHING
    page = context.get("page")
    properties = event.get("properties")
    first = page.get("url") if isinstance(page, Mapping) else None
    url = None
    if (text := _text(first)) is not None:
        url = page_url(text)
    if url is None and isinstance(properties, Mapping):
        second = properties.get("url")
        if second != first and (text := _text(second)) is not None:
            url = page_url(text)
    ip, agent = _text(context.get("ip")), _text(context.get("userAgent"))
    if ip is None and agent is None and url is None:
        return None
    if observed_at_ms is None:
        observed_at_ms = observation_ms(event, record_time_ms)
    return Visit(ip, agent, url, observed_at_ms)


_NOTHING: Mapping[str, Any] = {}
