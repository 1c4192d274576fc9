"""The router on arbitrary events: whatever a tracking library sends, it either routes it
(and what it routes survives the trip through a repartition topic) or raises a
``RecordError``, which is a dead letter. Anything else would stop the stage."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.conversions.clicks import QUERY_TYPES
from processor.core.errors import RecordError
from processor.stages.conversions import messages
from processor.stages.conversions.router import route

RECORD_MS = 1_800_000_000_000
KEPT = frozenset({"lifecycle", "mql_at"})

# Numbers as a JSON decoder gives them: orjson reads larger integers as floats, and JSON
# has no infinity nor NaN.
numbers = st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(), children, max_size=3), max_leaves=8)

# URL-shaped text: odd schemes, hosts (IPv6 brackets left open, say), %-escapes that are
# not UTF-8, click parameters with any value, repeated or empty.
hosts = st.sampled_from(["shop.example", "[::1", "[::1]:8080", "xn--bcher-kva.example",
                         "user:pw@h.example", "", "例え.jp", "h.example:99999"])
params = st.tuples(st.sampled_from([t.value for t in QUERY_TYPES] + ["utm_source", ""]),
                   st.text() | st.sampled_from(["%ff%fe", "a%2", "Cj0K%20x", "%E2%82%AC"]))
urls = st.builds(
    lambda scheme, host, path, pairs, fragment: (
        f"{scheme}{host}{path}?{'&'.join(f'{k}={v}' for k, v in pairs)}{fragment}"),
    st.sampled_from(["https://", "http://", "", "javascript:", "//"]), hosts,
    st.sampled_from(["/", "/p/ada@example.com", "", "/%40x"]) | st.text(max_size=10),
    st.lists(params, max_size=5), st.sampled_from(["", "#gclid=x", "#"]))
# Mostly usable ids, so that most events get as far as click capture.
ids = st.one_of(*[st.text(min_size=1, max_size=8)] * 6, st.none(), numbers, json_values)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    url = draw(st.one_of(urls, urls, st.text()))
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["page", "track", "identify", "screen", None])),
        "anonymousId": draw(ids), "userId": draw(ids),
        "context": draw(st.fixed_dictionaries(
            {"page": st.fixed_dictionaries({"url": st.just(url) | json_values,
                                            "search": st.text() | json_values})},
            optional={"ip": json_values, "userAgent": json_values,
                      "clientIds": st.dictionaries(st.sampled_from(["fbc", "fbp"]),
                                                   json_values)}) | json_values),
        "properties": draw(st.fixed_dictionaries({}, optional={"url": urls | json_values})
                           | json_values),
        "timestamp": draw(st.text(max_size=30) | json_values),
        "traits": draw(st.dictionaries(st.sampled_from(["lifecycle", "mql_at", "email",
                                                        "phone"]) | st.text(), json_values)
                       | json_values),
    }
    return event


@settings(deadline=None)  # the first phone number of a region loads its metadata
@given(events())
def test_any_event_is_routed_or_dead_lettered(event: dict[str, Any]) -> None:
    try:
        routed = route(event, RECORD_MS, KEPT, "US")
    except RecordError:
        return
    if routed.touch is not None:
        # Click IDs must reach the platforms byte for byte, through the repartition too.
        again = messages.decode(messages.encode(routed.touch))
        assert isinstance(again, messages.Touch)
        assert again.clicks == routed.touch.clicks
        assert (again.anonymous_id, again.user_id) == (routed.touch.anonymous_id,
                                                        routed.touch.user_id)
        for click in routed.touch.clicks.clicks.values():
            assert click.value
            assert not any(c.isspace() for c in click.value)
    if routed.identify is not None:
        assert messages.decode(messages.encode(routed.identify)) == routed.identify
