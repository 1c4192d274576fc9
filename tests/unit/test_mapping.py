"""Clearbit objects to ``clearbit_*`` traits, by Segment's naming rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.enrichment.mapping import flatten, snake_case, to_traits


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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)


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
