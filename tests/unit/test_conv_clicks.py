"""Click IDs and browser context: capture, newest per type, expiry, attachment, store form."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core.conversions.clicks import (
    GOOGLE_TYPES,
    QUERY_TYPES,
    Click,
    ClickSet,
    ClickType,
    extract,
    fbc_from_fbclid,
    observation_ms,
)
from processor.core.conversions.visits import Visit, page_url, visit_of

T0 = 1_795_168_800_000  # 2026-11-20T10:00:00Z in ms
T0_ISO = "2026-11-20T10:00:00.000Z"
DAY_MS = 86_400_000
TTL_MS = 90 * DAY_MS
RECORD_MS = T0 + 999


def page(url: str | None = None, search: str | None = None, **extra: Any) -> dict[str, Any]:
    page_context: dict[str, Any] = {}
    if url is not None:
        page_context["url"] = url
    if search is not None:
        page_context["search"] = search
    return {"type": "page", "anonymousId": "anon-1", "timestamp": T0_ISO,
            "context": {"page": page_context}, **extra}


def kinds(clicks: tuple[Click, ...]) -> dict[str, str]:
    return {c.type.value: c.value for c in clicks}


# --- capture ---------------------------------------------------------------------------

def test_every_query_type_is_captured_byte_for_byte() -> None:
    query = "&".join(f"{t.value}=Ab-{t.value}_9" for t in QUERY_TYPES)
    clicks = extract(page(f"https://shop.example/landing?{query}"), RECORD_MS)
    assert kinds(clicks) == {t.value: f"Ab-{t.value}_9" for t in QUERY_TYPES}
    assert {c.observed_at_ms for c in clicks} == {T0}


def test_values_are_decoded_once_and_never_re_cased() -> None:
    clicks = extract(page("https://a.example/?gclid=EAIaIQ%252Bx&fbclid=IwAR%2D0Zz"),
                     RECORD_MS)
    assert kinds(clicks) == {"gclid": "EAIaIQ%2Bx", "fbclid": "IwAR-0Zz"}


def test_search_and_properties_url_are_read_too() -> None:
    assert kinds(extract(page(search="?gbraid=0AAAAx"), RECORD_MS)) == {"gbraid": "0AAAAx"}
    event = {"type": "page", "properties": {"url": "https://a.example/p?wbraid=Cj0"}}
    assert kinds(extract(event, RECORD_MS)) == {"wbraid": "Cj0"}


def test_the_page_url_wins_over_search_and_properties() -> None:
    event = page("https://a.example/?gclid=FROM_URL", "?gclid=FROM_SEARCH",
                 properties={"url": "https://a.example/?gclid=FROM_PROPS"})
    assert kinds(extract(event, RECORD_MS)) == {"gclid": "FROM_URL"}


@pytest.mark.parametrize("query", ["gclid=", "gclid=a%20b", "gclid=a+b", "gclid=%ff%fe",
                                   "GCLID=upper-name", "xgclid=abc", "gclid=" + "a" * 1025,
                                   "gclid=a%00b"])
def test_unusable_values_are_not_captured(query: str) -> None:
    assert extract(page(f"https://a.example/?{query}"), RECORD_MS) == ()


def test_a_bad_pair_does_not_hide_the_good_ones() -> None:
    clicks = extract(page("https://a.example/?x=%ff&gclid=ok1&y"), RECORD_MS)
    assert kinds(clicks) == {"gclid": "ok1"}


def test_meta_cookies_verbatim_first_place_wins() -> None:
    fbc = "fb.1.1795168000000.IwAR-Zz"
    fbp = "fb.1.1795168000000.1116446470"
    event = page("https://a.example/")
    event["context"]["clientIds"] = {"fbc": fbc}
    event["properties"] = {"fbc": "fb.1.1700000000000.other", "fbp": fbp}
    event["context"]["traits"] = {"fbp": "fb.1.1600000000000.1"}
    assert kinds(extract(event, RECORD_MS)) == {"fbc": fbc, "fbp": fbp}


@pytest.mark.parametrize("value", ["fb.1.123.abc", "FB.1.1795168000000.x", "fb.3.1795168000000.x",
                                   "fb.1.1795168000000.", "fb.1.1795168000000.a b", 42])
def test_malformed_meta_cookies_are_not_captured(value: Any) -> None:
    assert extract({"properties": {"fbc": value}}, RECORD_MS) == ()


def test_observation_time_falls_back_in_order() -> None:
    assert observation_ms({"timestamp": T0_ISO, "originalTimestamp": "2020-01-01"}, 5) == T0
    assert observation_ms({"timestamp": "junk", "originalTimestamp": T0_ISO}, 5) == T0
    assert observation_ms({"timestamp": None}, 5) == 5
    assert observation_ms({}, 5) == 5


@pytest.mark.parametrize("event", [None, [], "x", {"context": []}, {"context": {"page": 3}},
                                   {"context": {"page": {"url": 5}}},
                                   {"context": {"page": {"url": "http://[::1/?gclid=a"}}}])
def test_odd_events_give_nothing(event: Any) -> None:
    assert extract(event, RECORD_MS) == ()


@given(st.text(), st.text())
def test_arbitrary_urls_and_queries_never_crash(url: str, search: str) -> None:
    for click in extract(page(url, search), RECORD_MS):
        assert click.value
        assert click.value in url or click.value in search or "%" in url + search


@given(st.lists(st.tuples(st.sampled_from([t.value for t in QUERY_TYPES] + ["q", ""]),
                          st.text()), max_size=6))
def test_arbitrary_query_pairs_never_crash(pairs: list[tuple[str, str]]) -> None:
    query = "&".join(f"{k}={v}" for k, v in pairs)
    clicks = extract(page(f"https://a.example/p?{query}", f"?{query}"), RECORD_MS)
    assert len({c.type for c in clicks}) == len(clicks)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(), children, max_size=3), max_leaves=10)


@given(st.dictionaries(st.sampled_from(["context", "properties", "timestamp", "type"]),
                       json_values))
def test_arbitrary_events_never_crash(event: dict[str, Any]) -> None:
    extract(event, RECORD_MS)
    visit_of(event, RECORD_MS)


# --- newest per type -------------------------------------------------------------------

def click(kind: ClickType, value: str, at: int) -> Click:
    return Click(kind, value, at)


def test_newest_value_per_type_wins_in_any_arrival_order() -> None:
    old, new = click(ClickType.GCLID, "old", T0), click(ClickType.GCLID, "new", T0 + 1)
    assert ClickSet().merged([old, new]).get(ClickType.GCLID) == new
    assert ClickSet().merged([new, old]).get(ClickType.GCLID) == new


def test_the_same_value_again_keeps_its_first_observation() -> None:
    first = click(ClickType.FBCLID, "IwAR", T0)
    again = ClickSet().merged([first]).merged([click(ClickType.FBCLID, "IwAR", T0 + DAY_MS)])
    assert again.get(ClickType.FBCLID) == first
    late_first = ClickSet().merged([click(ClickType.FBCLID, "IwAR", T0 + 5)]).merged([first])
    assert late_first.get(ClickType.FBCLID) == first


def test_types_do_not_replace_each_other() -> None:
    clicks = ClickSet().merged([click(ClickType.GCLID, "g", T0),
                                click(ClickType.WBRAID, "w", T0 + 1)])
    assert len(clicks) == 2


def test_equal_times_pick_the_same_value_whatever_the_order() -> None:
    a, b = click(ClickType.GCLID, "a", T0), click(ClickType.GCLID, "b", T0)
    assert ClickSet().merged([a, b]) == ClickSet().merged([b, a])


def test_expiry() -> None:
    clicks = ClickSet().merged([click(ClickType.GCLID, "g", T0),
                                click(ClickType.FBP, "fb.1.1795168000000.1", T0 + DAY_MS)])
    assert len(clicks.expire(T0 + TTL_MS, TTL_MS)) == 2
    kept = clicks.expire(T0 + TTL_MS + 1, TTL_MS)
    assert set(kept.clicks) == {ClickType.FBP}


# --- attachment ------------------------------------------------------------------------

ENTRY_TS = (T0 + DAY_MS) // 1000
NOW_MS = T0 + 2 * DAY_MS


def test_google_gets_exactly_the_newest_of_its_three() -> None:
    clicks = ClickSet().merged([click(ClickType.GCLID, "g", T0),
                                click(ClickType.GBRAID, "gb", T0 + 2),
                                click(ClickType.WBRAID, "wb", T0 + 1)])
    attached = clicks.attach(ENTRY_TS, NOW_MS, TTL_MS)
    assert attached.google == click(ClickType.GBRAID, "gb", T0 + 2)
    assert sum(c.type in GOOGLE_TYPES for c in attached.clicks()) == 1


def test_gclid_wins_a_tie_then_gbraid() -> None:
    tie = [click(ClickType.WBRAID, "wb", T0), click(ClickType.GBRAID, "gb", T0)]
    assert ClickSet().merged(tie).attach(ENTRY_TS, NOW_MS, TTL_MS).google == tie[1]
    with_gclid = ClickSet().merged([*tie, click(ClickType.GCLID, "g", T0)])
    assert with_gclid.attach(ENTRY_TS, NOW_MS, TTL_MS).google == click(
        ClickType.GCLID, "g", T0)


def test_only_clicks_at_or_before_the_entry_and_within_the_ttl() -> None:
    entry_ms = ENTRY_TS * 1000
    after = ClickSet().merged([click(ClickType.GCLID, "late", entry_ms + 1)])
    assert after.attach(ENTRY_TS, NOW_MS, TTL_MS).google is None
    at = ClickSet().merged([click(ClickType.GCLID, "at", entry_ms)])
    assert at.attach(ENTRY_TS, NOW_MS, TTL_MS).google is not None
    old = ClickSet().merged([click(ClickType.GCLID, "old", NOW_MS - TTL_MS - 1)])
    assert old.attach(ENTRY_TS, NOW_MS, TTL_MS).google is None
    # an entry a little in the future: the click must be within the TTL of the entry too
    edge = ClickSet().merged([click(ClickType.GCLID, "edge", NOW_MS - TTL_MS)])
    assert edge.attach(NOW_MS // 1000 + 60, NOW_MS, TTL_MS).google is None


def test_meta_fbc_is_built_from_the_first_observation_of_the_fbclid() -> None:
    clicks = ClickSet().merged([click(ClickType.FBCLID, "IwAR-Zz", T0)])
    clicks = clicks.merged([click(ClickType.FBCLID, "IwAR-Zz", T0 + 5000)])
    attached = clicks.attach(ENTRY_TS, NOW_MS, TTL_MS)
    assert attached.fbc is not None
    assert attached.fbc.value == f"fb.1.{T0}.IwAR-Zz"
    assert attached.fbc_source is ClickType.FBCLID
    assert fbc_from_fbclid(click(ClickType.FBCLID, "x", 1_700_000_000_123)).value == (
        "fb.1.1700000000123.x")


def test_a_newer_fbc_cookie_wins_an_equal_one_does_not() -> None:
    cookie_newer = ClickSet().merged([click(ClickType.FBCLID, "IwAR", T0),
                                      click(ClickType.FBC, "fb.1.1795168800001.IwAR", T0 + 1)])
    attached = cookie_newer.attach(ENTRY_TS, NOW_MS, TTL_MS)
    assert attached.fbc == click(ClickType.FBC, "fb.1.1795168800001.IwAR", T0 + 1)
    assert attached.fbc_source is ClickType.FBC
    cookie_same_time = ClickSet().merged([click(ClickType.FBCLID, "IwAR", T0),
                                          click(ClickType.FBC, "fb.1.1795168800000.c", T0)])
    assert cookie_same_time.attach(ENTRY_TS, NOW_MS, TTL_MS).fbc_source is ClickType.FBCLID


def test_fbp_when_captured_and_nothing_otherwise() -> None:
    fbp = click(ClickType.FBP, "fb.1.1795168000000.1116446470", T0)
    attached = ClickSet().merged([fbp]).attach(ENTRY_TS, NOW_MS, TTL_MS)
    assert attached.fbp == fbp
    assert attached.fbc is None
    assert attached.google is None
    assert ClickSet().attach(ENTRY_TS, NOW_MS, TTL_MS).clicks() == ()


# --- store form ------------------------------------------------------------------------

def test_store_form_round_trips_compactly() -> None:
    clicks = ClickSet().merged(extract(page(
        "https://a.example/?gclid=EAIa%C3%A9&fbclid=IwAR&li_fat_id=0f-1"), RECORD_MS))
    data = clicks.to_bytes()
    assert ClickSet.from_bytes(data) == clicks
    assert ClickSet.from_json(clicks.to_json()) == clicks
    assert data == (b'{"gclid":["EAIa\xc3\xa9",1795168800000],"fbclid":["IwAR",1795168800000],'
                    b'"li_fat_id":["0f-1",1795168800000]}')


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"gclid": "x"}',
                                  b'{"nope": ["x", 1]}', b'{"gclid": ["a b", 1]}',
                                  b'{"gclid": ["x", 1.5]}', b'{"gclid": ["x", true]}',
                                  b"[" * 100_000])
def test_store_values_that_do_not_fit_give_nothing(data: bytes) -> None:
    assert ClickSet.from_bytes(data) == ClickSet()


# --- browser context -------------------------------------------------------------------

def test_visit_from_a_page_event() -> None:
    event = page("https://User:pw@Shop.Example:8443/pricing?email=ada@example.com#x",
                 timestamp=T0_ISO)
    event["context"].update(ip="203.0.113.9", userAgent="Mozilla/5.0")
    assert visit_of(event, RECORD_MS) == Visit("203.0.113.9", "Mozilla/5.0",
                                               "https://shop.example:8443/pricing", T0)


@pytest.mark.parametrize(("url", "kept"), [
    ("https://a.example/users/ada@example.com", "https://a.example/"),
    ("https://a.example/u/ada%40example.com", "https://a.example/"),
    ("http://[2001:db8::1]/p?q", "http://[2001:db8::1]/p"),
    ("ftp://a.example/file", None),
    ("not a url", None),
    ("http://[::1/", None),
    ("https:///path", None),
])
def test_page_url_keeps_scheme_host_and_path_only(url: str, kept: str | None) -> None:
    assert page_url(url) == kept


def test_newer_visit_wins_field_by_field() -> None:
    old = Visit("198.51.100.1", "UA-old", "https://a.example/", T0)
    new = Visit(None, "UA-new", None, T0 + 1)
    assert old.newer(new) == Visit("198.51.100.1", "UA-new", "https://a.example/", T0 + 1)
    assert new.newer(old) == old.newer(new)
    assert Visit.from_json(old.to_json()) == old
    assert Visit.from_json(["a", "b"]) is None
    assert visit_of({"context": {"ip": ""}}, RECORD_MS) is None
