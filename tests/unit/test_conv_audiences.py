"""The audiences file: what starts, what refuses the start (and how it says so), and the
CEL criteria that never crash on what an identify carries."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from processor.core.conversions.audiences import load_audiences, parse_audiences
from processor.core.conversions.criteria import Criteria, CriteriaError, Verdict
from processor.core.conversions.durations import format_duration, parse_duration
from processor.core.errors import AudienceError, ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "conversions" / \
    "audiences.example.yaml"

BASE: dict[str, Any] = {
    "version": 1,
    "audiences": [{
        "key": "a1",
        "criteria": 'traits.lifecycle == "MQL"',
        "event_timestamp": "traits.mql_at",
        "within": "7d",
        "destinations": {
            "meta": {"pixel_id": "123", "event_name": "Lead"},
            "google": {"customer_id": "456", "conversion_action_id": "789"},
        },
    }],
}


def variant(change: Any) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    return yaml.safe_dump(data)


def audience(data: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = data["audiences"][0]
    return first


# --- what starts -----------------------------------------------------------------------

def test_the_example_file_loads() -> None:
    audiences = load_audiences(EXAMPLE)
    (mql,) = audiences
    assert mql.key == "mql_midmarket_7d"
    assert mql.within == 7 * 86_400
    assert mql.timestamp_trait == "mql_at"
    assert audiences.traits == {"clearbit_company_metrics_employees", "lifecycle", "mql_at"}
    assert mql.meta is not None
    assert mql.meta.action_source == "website"
    assert mql.google is not None
    assert mql.google.api == "data_manager"
    assert mql.criteria.evaluate({"clearbit_company_metrics_employees": 51,
                                  "lifecycle": "MQL"})
    assert not mql.criteria.evaluate({"clearbit_company_metrics_employees": "49",
                                      "lifecycle": "MQL"})


def test_defaults_and_friendly_id_forms() -> None:
    def change(data: dict[str, Any]) -> None:
        audience(data)["destinations"] = {
            "meta": {"pixel_id": 1234567890, "event_name": "Lead"},
            "google": {"customer_id": "123-456-7890", "conversion_action_id": 42,
                       "login_customer_id": ""},
        }
    (a1,) = parse_audiences(variant(change))
    assert a1.meta is not None
    assert a1.meta.pixel_id == "1234567890"
    assert a1.google is not None
    assert a1.google.customer_id == "1234567890"
    assert a1.google.conversion_action_id == "42"
    assert a1.google.login_customer_id is None
    assert a1.google.api == "data_manager"


def test_bounds_at_the_platform_limits_are_accepted() -> None:
    assert parse_audiences(variant(lambda d: None)).get("a1") is not None  # 7d with meta

    def google_only(data: dict[str, Any]) -> None:
        audience(data)["within"] = "90d"
        del audience(data)["destinations"]["meta"]
    assert parse_audiences(variant(google_only)).get("a1") is not None


def test_an_index_expression_may_name_any_trait() -> None:
    def change(data: dict[str, Any]) -> None:
        audience(data)["criteria"] = 'traits["Lead Status"] == "MQL"'
        audience(data)["event_timestamp"] = "traits['MQL Date']"
    (a1,) = parse_audiences(variant(change))
    assert a1.traits == {"Lead Status", "MQL Date"}


# --- what refuses the start ------------------------------------------------------------

def set_field(name: str, value: Any) -> Any:
    return lambda data: audience(data).__setitem__(name, value)


def drop_field(name: str) -> Any:
    return lambda data: audience(data).pop(name)


def second_audience(**fields: Any) -> Any:
    return lambda data: data["audiences"].append({**copy.deepcopy(audience(data)), **fields})


REFUSALS = [
    ("bad expression", set_field("criteria", "traits.lifecycle =="),
     "audience 'a1': criteria does not compile: at 1:20: Syntax error"),
    ("other variable", set_field("criteria", 'lifecycle == "MQL"'),
     "audience 'a1': criteria may read only traits, not lifecycle"),
    ("traits not by name", set_field("criteria", "size(traits) > 2"),
     "audience 'a1': criteria must name each trait"),
    ("no trait", set_field("criteria", "true"), "audience 'a1': criteria reads no trait"),
    ("no timestamp", drop_field("event_timestamp"), "audience 'a1': event_timestamp is required"),
    ("timestamp not a trait", set_field("event_timestamp", "now"),
     "audience 'a1': event_timestamp: name the one trait"),
    ("no bound", drop_field("within"), "audience 'a1': within is required"),
    ("bound not a duration", set_field("within", "7 days"), "audience 'a1': within: '7 days'"),
    ("bound a number", set_field("within", 7), "audience 'a1': within: write a duration"),
    ("bound too long for meta", set_field("within", "7d1s"),
     "audience 'a1': within 7d1s is too long: Meta takes events up to 7d old"),
    ("bound too long for google", lambda d: (set_field("within", "91d")(d),
                                             audience(d)["destinations"].pop("meta")),
     "audience 'a1': within 91d is too long: Google takes clicks up to 90d old"),
    ("duplicate key", second_audience(), "audience 'a1' is defined twice"),
    ("malformed key", set_field("key", "MQL-7d"),
     "audience 'MQL-7d': key: must be lower-case letters"),
    ("key too long", set_field("key", "a" * 65), "key: must be lower-case"),
    ("no destination", set_field("destinations", {}),
     "audience 'a1': destinations: name at least one destination"),
    ("pixel not digits", lambda d: audience(d)["destinations"]["meta"].update(pixel_id="px1"),
     "audience 'a1': destinations.meta.pixel_id: must be digits only"),
    ("google without action", lambda d: audience(d)["destinations"]["google"].pop(
        "conversion_action_id"),
     "audience 'a1': destinations.google.conversion_action_id is required"),
    ("value without currency", lambda d: audience(d)["destinations"]["google"].update(
        value=10), "value needs a currency"),
    ("unknown api", lambda d: audience(d)["destinations"]["google"].update(api="v1"),
     "destinations.google.api: Input should be 'data_manager' or 'ads'"),
    ("typo", set_field("withn", "7d"), "audience 'a1': withn is not a known field"),
    ("second audience named", second_audience(key="b2", within="1x"), "audience 'b2': within"),
    ("unnamed audience", lambda d: d["audiences"].append({"criteria": "x"}),
     "audience #2: key is required"),
    ("version", lambda d: d.update(version=2), "the file: version: Input should be 1"),
    ("no audiences", lambda d: d.update(audiences=[]), "the file: audiences:"),
]


@pytest.mark.parametrize(("label", "change", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_audience_in_one_line(label: str, change: Any, message: str) -> None:
    with pytest.raises(AudienceError) as raised:
        parse_audiences(variant(change), "audiences.yaml")
    text = str(raised.value)
    assert isinstance(raised.value, ConfigError)
    assert text.startswith("audiences file audiences.yaml: ")
    assert message in text, text
    assert "\n" not in text


@pytest.mark.parametrize(("text", "message"), [
    ("version: 1\naudiences: [\n", "not YAML"),
    ("version: 1\nversion: 1\naudiences: []\n", "'version' is given twice"),
    ("- just a list\n", "the file: Input should be a valid dictionary"),
    ("", "the file"),
])
def test_files_that_are_not_audiences(text: str, message: str) -> None:
    with pytest.raises(AudienceError) as raised:
        parse_audiences(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match="cannot be read"):
        load_audiences(tmp_path / "missing.yaml")


# --- criteria --------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "traits"), [
    ('int(traits.employees) >= 50 && traits.lifecycle == "MQL"', {"employees", "lifecycle"}),
    ('traits.tags.exists(t, t == "b2b")', {"tags"}),
    ('has(traits.plan) && traits["Lead Status"] != "x"', {"plan", "Lead Status"}),
    ('"traits.inside_a_string" == traits.name', {"name"}),
    ("traits.a // traits.in_a_comment\n == 1", {"a"}),
    ('r"\\" == traits.raw', {"raw"}),
    ('[1, 2].map(x, x * 2).size() > 1 && traits.b', {"b"}),
])
def test_the_traits_an_expression_reads(source: str, traits: set[str]) -> None:
    assert Criteria.compile(source).traits == traits


def test_evaluation_sees_only_the_traits_it_reads() -> None:
    criteria = Criteria.compile('traits.lifecycle == "MQL"')
    assert criteria.evaluate({"lifecycle": "MQL", "email": "ada@example.com"})


@pytest.mark.parametrize(("traits", "verdict"), [
    ({"n": 51, "s": "MQL"}, Verdict.MATCH),
    ({"n": 50, "s": "SQL"}, Verdict.NO_MATCH),
    ({"s": "MQL"}, Verdict.CRITERIA_ERROR),  # a missing trait
    ({"n": "fifty", "s": "MQL"}, Verdict.CRITERIA_ERROR),
    ({"n": None, "s": "MQL"}, Verdict.CRITERIA_ERROR),
    ({"n": 2**70, "s": "MQL"}, Verdict.CRITERIA_ERROR),
    ({"n": float("nan"), "s": "MQL"}, Verdict.CRITERIA_ERROR),
])
def test_verdicts(traits: dict[str, Any], verdict: Verdict) -> None:
    criteria = Criteria.compile('int(traits.n) > 50 && traits.s == "MQL"')
    assert criteria.verdict(traits) is verdict
    assert criteria.evaluate(traits) is (verdict is Verdict.MATCH)


def test_a_result_that_is_not_a_boolean_is_an_error() -> None:
    assert Criteria.compile("traits.n").verdict({"n": "yes"}) is Verdict.CRITERIA_ERROR
    assert Criteria.compile("traits.n").verdict({"n": True}) is Verdict.MATCH


def test_deeply_nested_values_do_not_reach_the_evaluator() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    criteria = Criteria.compile("traits.n == 1")
    assert criteria.verdict({"n": deep}) is Verdict.CRITERIA_ERROR
    shallow: Any = 1
    for _ in range(10):
        shallow = {"x": shallow}
    assert Criteria.compile("traits.n.x.x.x.x.x.x.x.x.x.x == 1").evaluate({"n": shallow})


def test_compile_errors_are_criteria_errors() -> None:
    with pytest.raises(CriteriaError, match="does not compile"):
        Criteria.compile("traits.x ==")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
EXPRESSIONS = [Criteria.compile(source) for source in (
    'int(traits.a) >= 50 && traits.b == "MQL"',
    "traits.a + traits.b == traits.c",
    'size(traits.a) > 2 || traits.b.startsWith("x")',
    "traits.a.exists(t, t == 1) && double(traits.b) < 2.5",
    'timestamp(traits.a) > timestamp("2020-01-01T00:00:00Z")',
    "traits.a in traits.b",
    "traits.a.b.c == null",
    "traits.a[0] == 1 && uint(traits.b) > 1u",
    'traits.a.matches("^a+$") && duration(traits.b) > duration("1s")',
    "traits.a / traits.b > 0 && traits.a % traits.c == 0",
    "traits.a",
)]


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]) | st.text(), json_values))
def test_any_json_traits_never_crash_evaluation(traits: dict[str, Any]) -> None:
    for criteria in EXPRESSIONS:
        assert criteria.verdict(traits) in set(Verdict)


# --- durations -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 604_800), ("36h", 129_600), ("6d23h", 601_200), ("30s", 30), ("5m", 300),
    (" 90d ", 7_776_000), ("1h30m", 5_400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7 d", "7days", "-1d", "0d", "1.5h", "7D"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
