"""Regex compilation for filters, refusing patterns that can backtrack catastrophically.

Filters come from operators' browsers and run on every node for every request, so a
pattern like ``(a+)+$`` must be refused at parse time, not discovered as a stuck node.
The check is conservative: a length cap, no backreferences, no unbounded repeat inside
another unbounded repeat, and no alternation inside an unbounded repeat unless every
branch starts with a distinct literal character.
"""

import functools
import re
import re._constants as sre_constants  # the parser's node names; stable across 3.11+
import re._parser as sre_parse
from typing import Any

from agents.filters.errors import FilterSyntaxError

MAX_REGEX_LENGTH = 200
_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
_POSSESSIVE = getattr(sre_constants, "POSSESSIVE_REPEAT", None)
if _POSSESSIVE is not None:
    _REPEATS.add(_POSSESSIVE)
_BACKREFS = {sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS}


class UnsafeRegex(Exception):
    """Internal: a pattern refused by the complexity bound (message explains why)."""


def _children(op: Any, av: Any) -> list[Any]:
    """Sub-patterns of one parsed node."""
    if op in _REPEATS:
        return [av[2]]
    if op == sre_constants.SUBPATTERN:
        return [av[-1]]
    if op == sre_constants.BRANCH:
        return list(av[1])
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [av[1]]
    if op == sre_constants.ATOMIC_GROUP:
        return [av]
    return []


def _first_literal(items: Any) -> int | None:
    """The literal character a sub-pattern must start with, if it is that simple."""
    for op, av in items:
        if op == sre_constants.LITERAL:
            return int(av)
        if op == sre_constants.SUBPATTERN:
            return _first_literal(av[-1])
        return None
    return None


def _check(items: Any, inside_repeat: bool, inside_unbounded: bool) -> None:
    for op, av in items:
        if op in _BACKREFS:
            raise UnsafeRegex("backreferences are not allowed")
        repeat = op in _REPEATS and av[1] > 1
        unbounded = op in _REPEATS and av[1] == sre_constants.MAXREPEAT
        # Bounded-in-bounded, as in (\d{1,3}\.){3}, stays linear; any unbounded level
        # nested with another repeat makes the number of ways to match explode.
        if (unbounded and inside_repeat) or (repeat and inside_unbounded):
            raise UnsafeRegex("nested quantifiers such as (a+)+ are not allowed")
        if op == sre_constants.BRANCH and inside_unbounded:
            firsts = [_first_literal(branch) for branch in av[1]]
            if None in firsts or len(set(firsts)) != len(firsts):
                raise UnsafeRegex(
                    "alternation inside a repeat such as (a|a)* is only allowed when "
                    "each branch starts with a different literal character"
                )
        for child in _children(op, av):
            _check(child, inside_repeat or repeat, inside_unbounded or unbounded)


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise UnsafeRegex(f"regex is {len(pattern)} characters, over the {MAX_REGEX_LENGTH} limit")
    try:
        parsed = sre_parse.parse(pattern)
        _check(parsed, False, False)
        return re.compile(pattern)
    except UnsafeRegex:
        raise
    except (re.error, OverflowError, RecursionError, ValueError, TypeError) as exc:
        raise UnsafeRegex(f"invalid regex: {exc}") from exc


def compile_safe(pattern: str, column: int | None = None) -> re.Pattern[str]:
    """Compile ``pattern`` once (cached) or raise FilterSyntaxError saying why it is refused."""
    try:
        return _compile(pattern)
    except UnsafeRegex as exc:
        where = f" at column {column}" if column is not None else ""
        shown = pattern if len(pattern) <= 40 else pattern[:37] + "..."
        raise FilterSyntaxError(f"regex /{shown}/{where}: {exc}", column) from None
