"""Clearbit objects to ``clearbit_*`` traits, by Segment's naming rule."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.enrichment.mapping import TRAIT_NAME, flatten, snake_case, to_traits


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("subIndustry", "sub_industry"),
        ("givenName", "given_name"),
        ("employeesRange", "employees_range"),
        ("alexaUsRank", "alexa_us_rank"),
        ("usEIN", "us_ein"),
        ("sic4Codes", "sic4_codes"),
        ("naics6Codes", "naics6_codes"),
        ("HTTPServer", "http_server"),
        ("already_snake", "already_snake"),
        ("name", "name"),
        ("with space", "with_space"),
        ("dash-ed", "dash_ed"),
        ("", ""),
        ("\U0001f600", ""),
        ("...", ""),
        ("caf\u00e9Name", "caf_name"),
    ],
)
def test_snake_case(segment: str, expected: str) -> None:
    assert snake_case(segment) == expected


def test_segment_examples_from_the_issue() -> None:
    traits = to_traits(
        {"name": {"givenName": "Ada", "familyName": None}},
        {"category": {"subIndustry": "Internet Software & Services"}},
    )
    assert traits == {
        "clearbit_person_name_given_name": "Ada",
        "clearbit_company_category_sub_industry": "Internet Software & Services",
    }


def test_nulls_and_empty_objects_produce_nothing_lists_stay_lists() -> None:
    traits = to_traits(
        {"bio": None, "geo": {}, "gravatar": {"avatars": [{"url": "a", "type": "thumb"}]}},
        {"tags": ["SaaS", "B2B"], "domainAliases": [], "metrics": {"employees": 0},
         "emailProvider": False},
    )
    assert traits == {
        "clearbit_person_gravatar_avatars": [{"url": "a", "type": "thumb"}],
        "clearbit_company_tags": ["SaaS", "B2B"],
        "clearbit_company_domain_aliases": [],
        "clearbit_company_metrics_employees": 0,
        "clearbit_company_email_provider": False,
    }


def test_person_only_or_company_only() -> None:
    assert to_traits(None, {"name": "Acme"}) == {"clearbit_company_name": "Acme"}
    assert to_traits({"id": "p1"}, None) == {"clearbit_person_id": "p1"}
    assert to_traits(None, None) == {}


def test_deep_nesting_does_not_recurse_on_the_stack() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(5000):
        deep = {"n": deep}
    traits = flatten("clearbit_person", deep)
    ((name, value),) = traits.items()
    assert value == 1
    assert name.endswith("_n_leaf")


def test_fields_without_a_name_are_left_out_and_there_is_no_bare_prefix() -> None:
    assert to_traits({"": "empty", "\U0001f600": {"x": 1}, "...": 3, "ok": True},
                     None) == {"clearbit_person_ok": True}
    assert to_traits(["a", "list"], "Initech") == {}
    assert to_traits({}, {"": {"": None}}) == {}


def test_colliding_names_go_to_the_first_field_in_the_answer() -> None:
    assert to_traits({"name": {"fullName": "Nested"}, "name_full_name": "Flat"}, None) == {
        "clearbit_person_name_full_name": "Nested"}
    assert to_traits({"name_full_name": "Flat", "name": {"fullName": "Nested"}}, None) == {
        "clearbit_person_name_full_name": "Flat"}
    assert to_traits({"fullName": "A", "full_name": "B", "FullName": "C"}, None) == {
        "clearbit_person_full_name": "A"}
    # A null takes no name: the later field gets it.
    assert to_traits({"fullName": None, "full_name": "B"}, None) == {
        "clearbit_person_full_name": "B"}


# Keys that collide, keys without a name, and anything at all.
keys = st.sampled_from(["name", "fullName", "full_name", "name_full_name", "Name", "",
                        "\U0001f600", "a.b", "a_b", "aB", "A_B", "__", "x1", "X1",
                        "HTTPServer", "http_server"]) | st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)


def reference_traits(person: Any, company: Any) -> dict[str, Any]:
    """The documented rule, written out plainly (recursively) to check the flattener."""
    out: dict[str, Any] = {}

    def walk(path: str, node: Any) -> None:
        if isinstance(node, dict):
            for field, child in node.items():
                segment = "_".join(w for w in re.split(
                    r"[^a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])",
                                          "_", field).lower()) if w)
                if segment:
                    walk(f"{path}_{segment}", child)
        elif node is not None:
            out.setdefault(path, node)

    for prefix, value in (("clearbit_person", person), ("clearbit_company", company)):
        if isinstance(value, dict):
            walk(prefix, value)
    return out


@settings(max_examples=500)
@given(person=json_values, company=json_values)
def test_no_answer_makes_a_name_outside_the_grammar_or_two_values_for_one_name(
        person: Any, company: Any) -> None:
    traits = to_traits(person, company)
    for name in traits:
        assert TRAIT_NAME.fullmatch(name), name
    # Each name holds the value of the first field, in the answer's order, that comes out
    # with that name: the rule, and so exactly one value for each name.
    assert traits == reference_traits(person, company)
    assert list(traits) == list(reference_traits(person, company))


@settings(max_examples=300)
@given(person=json_values, company=json_values)
def test_any_json_never_crashes_and_yields_prefixed_non_null_traits(
    person: Any, company: Any
) -> None:
    traits = to_traits(person, company)
    for name, value in traits.items():
        assert name.startswith(("clearbit_person", "clearbit_company"))
        assert value is not None
        assert not isinstance(value, dict)
        assert name == name.lower()
