"""Person audiences: the YAML file that says who converts, when, and where it is sent.

::

    version: 1
    audiences:
      - key: mql_midmarket_7d          # ^[a-z][a-z0-9_]{0,63}$, unique, never reused
        criteria: traits.lifecycle == "MQL"
        event_timestamp: traits.mql_at # required: when the person entered
        within: 7d                     # required: older entries are never sent
        destinations:
          meta: {pixel_id: "1234567890", event_name: Lead}
          google: {customer_id: "1234567890", conversion_action_id: "987654321"}

Everything is checked when the stage starts, and any problem refuses the start with
one line naming the audience and what to fix: a key malformed or used twice, criteria
that do not compile, a missing timestamp or bound, a bound longer than a destination
accepts (Meta takes events up to 7 days old, Google clicks up to 90), a destination
without its identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from processor.core.conversions.criteria import Criteria, CriteriaError
from processor.core.conversions.destinations import (
    DIGITS,
    GOOGLE_MAX_WITHIN,
    META_MAX_WITHIN,
    Destinations,
    GoogleDestination,
    MetaDestination,
    Strict,
)
from processor.core.conversions.durations import format_duration, parse_duration
from processor.core.errors import AudienceError

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_TIMESTAMP_TRAIT = re.compile(r"""traits\.([A-Za-z_][A-Za-z0-9_]*)|traits\[["']([^"'\\]+)["']\]""")


def timestamp_trait(text: str) -> str:
    """The trait named by an ``event_timestamp``: ``traits.mql_at`` -> ``mql_at``."""
    match = _TIMESTAMP_TRAIT.fullmatch(text.strip())
    if match is None:
        raise ValueError("name the one trait that holds it, such as traits.mql_at")
    return match.group(1) or match.group(2)


class AudienceSpec(Strict):
    """One audience as written in the file."""

    key: str = Field(pattern=KEY_PATTERN)
    criteria: str = Field(min_length=1)
    event_timestamp: str
    within: str
    destinations: Destinations

    @field_validator("event_timestamp")
    @classmethod
    def _one_trait(cls, value: str) -> str:
        timestamp_trait(value)
        return value.strip()

    @field_validator("within", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("write a duration such as 7d, 36h or 6d23h")  # pydantic wants it
        parse_duration(value)
        return value


class AudiencesFile(Strict):
    version: Literal[1]
    audiences: list[AudienceSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True, eq=False)
class Audience:
    """An audience ready to evaluate: compiled criteria, the bound in seconds."""

    key: str
    criteria: Criteria
    timestamp_trait: str
    within: int
    meta: MetaDestination | None
    google: GoogleDestination | None

    @property
    def traits(self) -> frozenset[str]:
        """Every trait this audience reads: its criteria's and its timestamp."""
        return self.criteria.traits | {self.timestamp_trait}


@dataclass(frozen=True, slots=True)
class Audiences:
    """The audiences of one file, in its order."""

    audiences: tuple[Audience, ...]

    def __iter__(self) -> Iterator[Audience]:
        return iter(self.audiences)

    def __len__(self) -> int:
        return len(self.audiences)

    def get(self, key: str) -> Audience | None:
        return next((a for a in self.audiences if a.key == key), None)

    @property
    def traits(self) -> frozenset[str]:
        """Every trait any audience reads: what the person store keeps."""
        return frozenset().union(*(a.traits for a in self.audiences))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently; a config file must not."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _UniqueKeyLoader.construct_mapping)


def _label(raw: Any, index: Any) -> str:
    items = raw.get("audiences") if isinstance(raw, dict) else None
    if isinstance(index, int) and isinstance(items, list) and index < len(items):
        key = items[index].get("key") if isinstance(items[index], dict) else None
        if isinstance(key, str) and key:
            return f"audience {key!r}"
    return f"audience #{index + 1}" if isinstance(index, int) else "the file"


_PATTERN_MEANINGS = {
    DIGITS: "must be digits only",
    KEY_PATTERN: "must be lower-case letters, digits and _, start with a letter, at most 64",
}


def _first_problem(error: ValidationError, raw: Any) -> str:
    """One line for the first thing pydantic found: where, which field, what to fix."""
    problem = error.errors()[0]
    location = list(problem["loc"])
    in_audience = location[:1] == ["audiences"] and len(location) > 1
    where = _label(raw, location[1]) if in_audience else "the file"
    path = ".".join(str(p) for p in location[2 if in_audience else 0:])
    kind = problem["type"]
    message = str(problem["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        return f"{where}: {path} is required"
    if kind == "extra_forbidden":
        return f"{where}: {path} is not a known field"
    if kind == "string_pattern_mismatch":
        message = _PATTERN_MEANINGS.get(str(problem.get("ctx", {}).get("pattern")), message)
    return f"{where}: {path}: {message}" if path else f"{where}: {message}"


def _compiled(spec: AudienceSpec) -> Audience:
    where = f"audience {spec.key!r}"
    try:
        criteria = Criteria.compile(spec.criteria)
    except CriteriaError as error:
        raise AudienceError(f"{where}: criteria {error}") from error
    within = parse_duration(spec.within)
    meta, google = spec.destinations.meta, spec.destinations.google
    for present, limit, name in ((meta, META_MAX_WITHIN, "Meta takes events up to"),
                                 (google, GOOGLE_MAX_WITHIN, "Google takes clicks up to")):
        if present is not None and within > limit:
            raise AudienceError(f"{where}: within {spec.within} is too long: {name} "
                                f"{format_duration(limit)} old; shorten it")
    return Audience(spec.key, criteria, timestamp_trait(spec.event_timestamp), within,
                    meta, google)


def parse_audiences(text: str, source: str = "<audiences>") -> Audiences:
    """The audiences in YAML ``text``; raises ``AudienceError`` naming ``source``, the
    audience and what to fix."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise AudienceError(f"audiences file {source}: not YAML: {detail}") from error
    try:
        spec = AudiencesFile.model_validate(raw)
    except ValidationError as error:
        message = _first_problem(error, raw)
        raise AudienceError(f"audiences file {source}: {message}") from None
    seen: set[str] = set()
    audiences = []
    for item in spec.audiences:
        if item.key in seen:
            raise AudienceError(f"audiences file {source}: audience {item.key!r} is defined "
                                "twice; keys are unique and never reused")
        seen.add(item.key)
        try:
            audiences.append(_compiled(item))
        except AudienceError as error:
            raise AudienceError(f"audiences file {source}: {error}") from error.__cause__
    return Audiences(tuple(audiences))


def load_audiences(path: Path) -> Audiences:
    """The audiences of the file at ``path``, checked and compiled."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AudienceError(f"audiences file {path}: cannot be read ({error})") from error
    return parse_audiences(text, str(path))
