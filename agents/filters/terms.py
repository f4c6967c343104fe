"""Filter terms and how one term is evaluated against one node.

Shared by the structured Filter lists and the compound language, so ``customer=acme``
means exactly the same thing in both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.filters.errors import FilterSyntaxError
from agents.filters.safe_regex import compile_safe

# "!~" (does not match) is what "fact!=/re/" normalises to; users rarely type it.
OPERATORS = ("==", "!=", "=~", "!~", "<", ">", "<=", ">=")
OPERATOR_HINT = "expected one of == != =~ < > <= >="
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Returned by lookup_fact for an absent fact (None is a legitimate fact value).
MISSING = object()


class NodeView(Protocol):
    """What a filter needs to know about a node."""

    @property
    def identity(self) -> str: ...

    @property
    def facts(self) -> dict[str, Any]: ...

    @property
    def classes(self) -> list[str]: ...

    @property
    def agents(self) -> list[str]: ...


@dataclass(frozen=True)
class Node:
    """A plain NodeView: the simulator, the daemon and tests use this."""

    identity: str
    facts: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FactTerm:
    """``fact OPERATOR value``; for ``=~`` and ``!~`` the value is a regex without slashes."""

    fact: str
    operator: str
    value: str

    def describe(self) -> str:
        """The term in compound syntax, quoting the value where needed."""
        if self.operator in ("=~", "!~"):
            return f"{self.fact}{self.operator}/{escape_slashes(self.value)}/"
        return f"{self.fact}{self.operator}{quote_value(self.value)}"

    def to_dict(self) -> dict[str, str]:
        """``{"fact": ..., "operator": ..., "value": ...}``."""
        return {"fact": self.fact, "operator": self.operator, "value": self.value}


def is_regex_literal(value: str) -> bool:
    """True for ``/something/``."""
    return len(value) >= 2 and value.startswith("/") and value.endswith("/")


def escape_slashes(pattern: str) -> str:
    """Escape every ``/`` not already escaped, so the pattern can sit between slashes."""
    out = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "/":
            out.append("\\/")
        else:
            out.append(ch)
    return "".join(out)


_BARE_VALUE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+\-]*")  # as the lexer reads a word
_KEYWORDS = {"and", "or", "not"}


def quote_value(value: str) -> str:
    """A value as the compound lexer reads it back: bare if safe, else double-quoted."""
    if _BARE_VALUE_RE.fullmatch(value) and value.lower() not in _KEYWORDS:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_fact_term(
    fact: str,
    operator: str,
    value: str,
    column: int | None = None,
    *,
    regex: bool | None = None,
) -> FactTerm:
    """Normalise and validate one fact term (``=`` becomes ``==``, ``==/re/`` becomes ``=~``).

    ``regex`` says whether ``value`` was written ``/re/``; None means "decide by the
    slashes" (CLI and dict forms), False keeps a quoted "/x/" literal.
    Raises FilterSyntaxError for an unknown operator, a bad fact name or an unsafe regex.
    """
    if not all(isinstance(x, str) for x in (fact, operator, value)):
        raise FilterSyntaxError("fact, operator and value must be strings", column)
    if operator == "=":
        operator = "=="
    if operator not in OPERATORS:
        where = f" at column {column}" if column is not None else ""
        raise FilterSyntaxError(f"unknown operator {operator!r}{where}; {OPERATOR_HINT}", column)
    if not fact or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", fact):
        raise FilterSyntaxError(f"invalid fact name {fact!r}", column)
    if regex is None:
        regex = is_regex_literal(value)
        if regex:
            value = value[1:-1]
    if regex and operator in ("==", "=~"):
        operator = "=~"
    elif regex and operator in ("!=", "!~"):
        operator = "!~"
    elif regex:
        raise FilterSyntaxError(
            f"operator {operator!r} cannot take a regex value; use =~ or !~", column
        )
    if operator in ("=~", "!~"):
        compile_safe(value, column)
    return FactTerm(fact, operator, value)


def parse_fact_term(text: str) -> FactTerm:
    """Parse a CLI fact filter such as ``customer=acme``, ``cpus>=4`` or ``os=~/deb/``."""
    if not isinstance(text, str):
        raise FilterSyntaxError("fact filter must be a string")
    match = re.match(r"\s*([^=!<>~\s]*)\s*([=!<>~]+)\s*(.*?)\s*$", text, re.DOTALL)
    if not match:
        raise FilterSyntaxError(f"fact filter {text!r} must look like fact=value", 1)
    fact, operator, value = match.groups()
    return make_fact_term(fact, operator, value, match.start(2) + 1)


def lookup_fact(facts: Any, name: str) -> Any:
    """The fact's value; a dotted name reaches into nested dicts when no flat key exists."""
    if not isinstance(facts, dict):
        return MISSING
    if name in facts:
        return facts[name]
    current: Any = facts
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return MISSING
        current = current[part]
    return current


def as_text(value: Any) -> str:
    """The text a scalar fact value is compared as (``true``/``false``, ``None``, ``str()``):
    the one rule, also used by the portal's search columns and its value suggestions."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_number(text: str) -> float | None:
    """The number a fact's text stands for, or None: the one rule for numeric comparison
    (the portal's inventory queries use it too)."""
    if not _NUMBER_RE.fullmatch(text.strip()):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _compare(actual: str, operator: str, expected: str) -> bool:
    a, b = as_number(actual), as_number(expected)
    if a is not None and b is not None:
        left: Any
        right: Any
        left, right = a, b
    else:
        left, right = actual, expected
    if operator == "==":
        return bool(left == right)
    if operator == "<":
        return bool(left < right)
    if operator == ">":
        return bool(left > right)
    if operator == "<=":
        return bool(left <= right)
    return bool(left >= right)


def fact_matches(term: FactTerm, facts: Any) -> bool:
    """Evaluate one term; a missing fact never matches, whatever the operator.

    A list-valued fact matches when any element does (``!=``, ``!~``: when none does).
    """
    raw = lookup_fact(facts, term.fact)
    if raw is MISSING or raw is None:
        return False
    values = [as_text(v) for v in raw] if isinstance(raw, list) else [as_text(raw)]
    if term.operator in ("=~", "!~"):
        rx = compile_safe(term.value)
        found = any(rx.search(v) for v in values)
        return found if term.operator == "=~" else not found
    if term.operator == "!=":
        return not any(_compare(v, "==", term.value) for v in values)
    return any(_compare(v, term.operator, term.value) for v in values)


def name_matches(pattern: str, names: Any) -> bool:
    """Exact name, or ``/re/`` searched in each name (identity, class and agent values)."""
    candidates = [names] if isinstance(names, str) else list(names)
    if is_regex_literal(pattern):
        rx = compile_safe(pattern[1:-1])
        return any(isinstance(n, str) and rx.search(n) for n in candidates)
    return pattern in candidates
