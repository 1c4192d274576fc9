"""Audience criteria: CEL expressions over a person's traits, compiled once at start.

CEL is sandboxed and not Turing-complete, so an expression from a config file can
neither loop nor reach anything but the ``traits`` it is given. Compiling also tells
which traits an expression reads: the person store keeps only those, and evaluation
is given only those, so what is tested here is exactly what the store can answer.

At run time nothing an identify carries can crash evaluation: a missing trait, a
value of the wrong type, an overflow or a result that is not a boolean are all the
verdict ``criteria_error``, which counts as not matching.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cel

VARIABLE = "traits"
# The native evaluator converts values recursively and overflows its stack (the whole
# process dies) around 20,000 levels; no trait worth reading is nested this deep.
MAX_DEPTH = 32
MAX_MESSAGE = 200
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TOKENS = re.compile(
    r"""(?P<raw>[bB]?[rR][bB]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*'))
      | (?P<string>[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
                        |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
      | (?P<comment>//[^\n]*)
      | (?P<space>\s+)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<other>.)""",
    re.VERBOSE,
)
_PLAIN_LITERAL = re.compile(r"""(?:"([^"\\\n]*)"|'([^'\\\n]*)')""")


class Verdict(StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"
    CRITERIA_ERROR = "criteria_error"


class CriteriaError(ValueError):
    """The expression cannot be used; the message says why in one line."""


def _compile_problem(error: Exception) -> str:
    """The parser's own words, on one line and without the expression repeated."""
    text = " ".join(str(error).split())
    _, marker, detail = text.partition("ERROR: <input>:")
    text = f"at {detail.partition(' | ')[0]}" if marker else text or "invalid expression"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def _significant(source: str) -> list[tuple[str, str]]:
    return [(kind, match.group()) for match in _TOKENS.finditer(source)
            if (kind := match.lastgroup or "other") not in ("comment", "space")]


def _trait_name(tokens: list[tuple[str, str]], at: int) -> str:
    """The trait read by the ``traits`` token at ``at``: ``.name`` or ``["name"]``."""
    following = tokens[at + 1:at + 4]
    kinds = [kind for kind, _ in following]
    texts = [text for _, text in following]
    if texts[:1] == ["."] and kinds[1:2] == ["ident"]:
        return texts[1]
    if texts[:1] == ["["] and texts[2:3] == ["]"] and kinds[1:2] == ["string"]:
        literal = _PLAIN_LITERAL.fullmatch(texts[1])
        if literal:
            return literal.group(1) if literal.group(1) is not None else literal.group(2)
    raise CriteriaError(f'must name each trait it reads ({VARIABLE}.name or {VARIABLE}["name"]) '
                        "so that the person store knows what to keep")


def _referenced(tokens: list[tuple[str, str]]) -> tuple[frozenset[str], frozenset[str]]:
    """The trait names read, and the names bound by comprehension macros
    (the ``t`` of ``traits.tags.exists(t, t == "x")``)."""
    traits: set[str] = set()
    bound: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "ident":
            continue
        member = i > 0 and tokens[i - 1][1] == "."
        if member and text in _MACROS:
            following = tokens[i + 1:i + 4]
            texts = [t for _, t in following]
            if texts[:1] == ["("] and texts[2:3] == [","] and following[1][0] == "ident":
                bound.add(texts[1])
        elif not member and text == VARIABLE:
            traits.add(_trait_name(tokens, i))
    return frozenset(traits), frozenset(bound)


def _too_deep(values: Mapping[str, Any]) -> bool:
    pending = [(value, 1) for value in values.values()]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return True
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return False


@dataclass(frozen=True, slots=True, eq=False)
class Criteria:
    """A compiled criteria expression and the trait names it reads."""

    source: str
    traits: frozenset[str]
    program: cel.Program

    @classmethod
    def compile(cls, source: str) -> Criteria:
        """Compile ``source``; raises ``CriteriaError`` when it does not parse, reads a
        variable other than ``traits`` or reads ``traits`` other than by name."""
        try:
            program = cel.compile(source)
        except (ValueError, RuntimeError) as error:
            raise CriteriaError(f"does not compile: {_compile_problem(error)}") from error
        traits, bound = _referenced(_significant(source))
        unknown = sorted(set(program.variables()) - bound - {VARIABLE})
        if unknown:
            raise CriteriaError(f"may read only {VARIABLE}, not {', '.join(unknown)}")
        if not traits:
            raise CriteriaError(f"reads no trait: write it over {VARIABLE}.<name>")
        return cls(source, traits, program)

    def verdict(self, traits: Mapping[str, Any]) -> Verdict:
        """Whether ``traits`` (a person's merged traits) satisfy the expression."""
        known = {name: traits[name] for name in self.traits if name in traits}
        if _too_deep(known):
            return Verdict.CRITERIA_ERROR
        try:
            result = self.program.execute({VARIABLE: known})
        except Exception:  # noqa: BLE001 - the evaluator raises many types; any is a no
            return Verdict.CRITERIA_ERROR
        if result is True:
            return Verdict.MATCH
        return Verdict.NO_MATCH if result is False else Verdict.CRITERIA_ERROR

    def evaluate(self, traits: Mapping[str, Any]) -> bool:
        """True only for a match; an error is False."""
        return self.verdict(traits) is Verdict.MATCH
