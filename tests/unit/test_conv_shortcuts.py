"""The shortcuts click capture and the browser context take for speed give exactly what
the plain computations they stand for give, on URL-shaped and arbitrary text."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from hypothesis import example, given
from hypothesis import strategies as st

from processor.core.conversions.clicks import (
    _USABLE,
    MAX_VALUE_LENGTH,
    QUERY_TYPES,
    ClickType,
    _from_query,
    _query_of,
    _usable,
    extract,
)
from processor.core.conversions.visits import page_url, visit_of
from tests.unit.test_conv_router import RECORD_MS
from tests.unit.test_conv_router import events as router_events


def plain_page_url(url: str) -> str | None:
    """``page_url`` as a single urlsplit of the whole URL."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = "/" if "@" in parts.path or "%40" in parts.path.lower() else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def plain_query(url: str) -> str:
    try:
        return urlsplit(url).query
    except ValueError:
        return ""


pieces = st.sampled_from(["https://", "http://", "HTTPS://", "//", "mailto:", "a?b:c", "h.example",
                          "[::1]", "[::1", "]", ":8080", ":x", "user:pw@", "@", "%40", "/", "/p",
                          "?", "#", "&", "=", "gclid=", "é", "\t", "\n", " ", "\x00", ";"])
urlish = st.lists(pieces | st.text(max_size=4), max_size=10).map("".join)


@given(urlish | st.text())
@example("https://shop.example/p ?gclid=x")
@example("https://user:pw@shop.example:443/users/ada@example.com?x#y")
@example("https://[::1/?gclid=a")
def test_page_url_is_the_whole_urls_split(url: str) -> None:
    assert page_url(url) == plain_page_url(url)


@given(urlish | st.text())
@example("https://h.example/p?gclid=a#frag?x")
@example("https://h.example/p#f?gclid=a")
@example("https://h\t.example/p?gcl\nid=a")
def test_the_query_is_urlsplits(url: str) -> None:
    assert _query_of(url, True) == plain_query(url)


def plain_clicks(query: str) -> dict[ClickType, str]:
    """The click parameters of ``query`` by ``parse_qsl``, a pair at a time, once a click
    parameter's name is seen in it as it is."""
    names = {t.value: t for t in QUERY_TYPES}
    found: dict[ClickType, str] = {}
    if not any(name in query for name in names):
        return found
    for part in query.split("&"):
        try:
            pairs = parse_qsl(part, errors="strict")
        except UnicodeDecodeError:
            continue
        for name, value in pairs:
            kind = names.get(name)
            if kind is not None and kind not in found and _usable(value):
                found[kind] = value
    return found


names = st.sampled_from([t.value for t in QUERY_TYPES] + ["g%63lid", "gclid+", "+gclid", "",
                                                          "%ff", "utm_source", "gclid%3D"])
values = st.text() | st.sampled_from(["%ff%fe", "a%2", "Cj0K%20x", "%E2%82%AC", "a+b", "+",
                                      "%", "=", "x=y"])
queries = st.lists(st.tuples(names, st.sampled_from(["=", "", "=="]), values),
                   max_size=6).map(lambda parts: "&".join(f"{n}{e}{v}" for n, e, v in parts))


@given(queries | st.text())
@example("gclid=&gclid=a")
@example("g%63lid=%ff&gclid=b")
@example("fbclid=a+b&fbclid=c")
def test_click_parameters_are_parse_qsls(query: str) -> None:
    found: dict[ClickType, str] = {}
    _from_query(query, found)
    assert found == plain_clicks(query)


@given(st.text() | st.text(st.characters(max_codepoint=0x7F)) | st.sampled_from(
    ["", " ", "a b", "a\tb", "\x1c", "\x7f", "~!", "Cj0K_-.", "x" * (MAX_VALUE_LENGTH + 1)]))
def test_a_usable_value_is_the_patterns(value: str) -> None:
    assert _usable(value) is (len(value) <= MAX_VALUE_LENGTH
                              and _USABLE.fullmatch(value) is not None)


@given(router_events())
def test_the_visit_stamped_with_the_clicks_time_is_the_visit(event: dict[str, Any]) -> None:
    found = extract(event, RECORD_MS)
    if found:
        assert visit_of(event, RECORD_MS, found[0].observed_at_ms) == visit_of(event, RECORD_MS)
