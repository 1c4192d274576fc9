"""Clearbit person/company objects to flat ``clearbit_*`` traits, by Segment's rule.

``clearbit_`` + ``person_`` or ``company_`` + the field's path, each camelCase
segment in snake_case, segments joined by ``_``:
``company.category.subIndustry`` becomes ``clearbit_company_category_sub_industry``.
Digits stay with the word before them (``sic4Codes`` becomes ``sic4_codes``,
``usEIN`` becomes ``us_ein``). Null fields and empty objects produce nothing;
lists stay lists (their items untouched); every other value is copied as is.

Whatever the answer holds, every name is ``clearbit_person`` or ``clearbit_company``
followed by one or more ``_<a-z0-9 word>`` (``TRAIT_NAME``), and no name has two values:

* characters other than ASCII letters and digits separate words; a field whose
  name has none (``""``, an emoji, ``"..."``) cannot be named, and is left out
  with everything under it;
* a person or company that is not an object produces nothing (there is no bare
  ``clearbit_person``);
* when two fields come out with the same name (``name.fullName`` and
  ``name_full_name``, or ``fullName`` and ``full_name``), the first in the
  answer's order (depth first, fields as the body lists them) keeps it and the
  later one is left out.

The flattener never recurses on the Python stack, so an arbitrarily deep body
cannot crash it, and it accepts any JSON value without raising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

PREFIX = "clearbit"

# A boundary before an upper-case letter that follows a lower-case letter or a
# digit ("subIndustry"), and before the last capital of an acronym that starts
# a new word ("HTTPServer" -> "HTTP_Server").
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
TRAIT_NAME = re.compile(r"clearbit_(?:person|company)(?:_[a-z0-9]+)+")


@lru_cache(maxsize=4096)
def snake_case(segment: str) -> str:
    """One path segment in snake_case; characters outside ``[a-z0-9]`` become ``_``."""
    spaced = _HUMP.sub("_", segment).lower()
    return _NOT_WORD.sub("_", spaced).strip("_")


# The full name of each (path, field) met so far ("" when the field cannot be named):
# an answer's fields repeat from lookup to lookup, and naming them was most of the cost
# of a lookup's result. Emptied when full, so an unusual provider cannot grow it.
_NAMES: dict[tuple[str, Any], str] = {}
_NAMES_MAX = 65_536
# What a JSON value can be besides an object: never looked at as a Mapping.
_LEAVES = (str, int, float, list)


def _name(path: str, field: Any) -> str:
    segment = snake_case(str(field))
    name = f"{path}_{segment}" if segment else ""
    if len(_NAMES) >= _NAMES_MAX:
        _NAMES.clear()
    _NAMES[(path, field)] = name
    return name


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Flatten one JSON object under ``prefix`` (``clearbit_person`` for example); anything
    but an object gives nothing."""
    traits: dict[str, Any] = {}
    if not isinstance(value, Mapping):
        return traits
    names = _NAMES
    # Depth first in body order: each object's fields are walked by an iterator of its
    # own, left on the stack while an object under it is walked.
    stack: list[tuple[str, Any]] = [(prefix, iter(value.items()))]
    while stack:
        path, fields = stack[-1]
        for field, child in fields:
            if child is None:
                continue
            name = names.get((path, field))
            if name is None:
                name = _name(path, field)
            if not name:
                continue
            if type(child) is dict or (not isinstance(child, _LEAVES)
                                       and isinstance(child, Mapping)):
                stack.append((name, iter(child.items())))
                break
            if name not in traits:  # first come, first named
                traits[name] = child
        else:
            stack.pop()
    return traits


def to_traits(person: Any, company: Any) -> dict[str, Any]:
    """All ``clearbit_*`` traits for one combined lookup result."""
    traits = flatten(f"{PREFIX}_person", person)
    traits.update(flatten(f"{PREFIX}_company", company))
    return traits
