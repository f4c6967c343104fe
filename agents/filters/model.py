"""The Filter: MCollective's five filter kinds, as one dataclass shared by portal and nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.filters.compound import Expr, NameExpr, name_expr, parse_compound
from agents.filters.errors import FilterSyntaxError
from agents.filters.terms import FactTerm, NodeView, fact_matches, make_fact_term, name_matches

FILTER_KEYS = ("fact", "cf_class", "agent", "identity", "compound")


@dataclass(frozen=True)
class Filter:
    """Which nodes a request is for.

    The five kinds are ANDed. Within a kind, facts, classes and agents are ANDed too, while
    identities are ORed (a list of identities names several nodes, as in MCollective).
    Class and identity values are exact names or ``/regex/``. An empty Filter matches all.
    """

    fact: list[FactTerm] = field(default_factory=list)
    cf_class: list[str] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    identity: list[str] = field(default_factory=list)
    compound: str | None = None

    @classmethod
    def parse(cls, text: str) -> Filter:
        """A Filter whose compound is ``text`` (validated); blank text means "every node"."""
        if not isinstance(text, str):
            raise FilterSyntaxError("filter must be a string")
        stripped = text.strip()
        if not stripped:
            return cls()
        # Parsed as typed, so an error's column points into the text the operator sees.
        parse_compound(text)
        return cls(compound=stripped)

    @classmethod
    def from_dict(cls, data: Any) -> Filter:
        """Build and validate a Filter from its to_dict() form (as carried in a Request).

        Raises FilterSyntaxError on unknown keys, wrong shapes, bad operators or unsafe regexes.
        """
        if not isinstance(data, dict):
            raise FilterSyntaxError(f"filter must be an object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in FILTER_KEYS)
        if unknown:
            raise FilterSyntaxError(
                f"unknown filter key(s) {', '.join(unknown)}; expected {', '.join(FILTER_KEYS)}"
            )
        facts = []
        for item in _list_of(data, "fact", dict):
            if set(item) != {"fact", "operator", "value"}:
                raise FilterSyntaxError(
                    "each fact filter must have exactly 'fact', 'operator' and 'value'"
                )
            facts.append(make_fact_term(item["fact"], item["operator"], item["value"]))
        names: dict[str, list[str]] = {}
        for key, kind in (("cf_class", "class"), ("agent", "agent"), ("identity", "identity")):
            values = _list_of(data, key, str)
            for value in values:
                name_expr(kind, value, False, 1)
            names[key] = values
        compound = data.get("compound")
        if compound is not None:
            if not isinstance(compound, str):
                raise FilterSyntaxError("filter 'compound' must be a string or null")
            compound = compound.strip() or None
            if compound is not None:
                parse_compound(compound)
        return cls(facts, names["cf_class"], names["agent"], names["identity"], compound)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form carried in ``Request.filter``; from_dict() reverses it."""
        return {
            "fact": [term.to_dict() for term in self.fact],
            "cf_class": list(self.cf_class),
            "agent": list(self.agent),
            "identity": list(self.identity),
            "compound": self.compound,
        }

    def is_empty(self) -> bool:
        """True when the filter matches every node."""
        return not (self.fact or self.cf_class or self.agent or self.identity or self.compound)

    def matches(self, node: NodeView) -> bool:
        """True if ``node`` passes every part of the filter (compiled regexes are cached)."""
        if not all(fact_matches(term, node.facts) for term in self.fact):
            return False
        if not all(name_matches(c, node.classes) for c in self.cf_class):
            return False
        if not all(name_matches(a, node.agents) for a in self.agent):
            return False
        if self.identity and not any(name_matches(i, node.identity) for i in self.identity):
            return False
        return self.compound is None or parse_compound(self.compound).evaluate(node)

    def describe(self) -> str:
        """The whole filter as one canonical compound expression ("" when it matches all).

        ``Filter.parse(f.describe())`` selects exactly the nodes ``f`` selects.
        """
        parts = [term.describe() for term in self.fact]
        parts += [NameExpr("class", c).describe() for c in self.cf_class]
        parts += [NameExpr("agent", a).describe() for a in self.agent]
        idents = [NameExpr("identity", i).describe() for i in self.identity]
        if len(idents) == 1:
            parts += idents
        elif idents:
            parts.append("(" + " or ".join(idents) + ")")
        if self.compound is not None:
            expr: Expr = parse_compound(self.compound)
            text = expr.describe()
            parts.append(text if len(parts) == 0 else f"({text})")
        return " and ".join(parts)


def _list_of(data: dict[str, Any], key: str, item_type: type) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
        raise FilterSyntaxError(f"filter {key!r} must be a list of {item_type.__name__}")
    return list(value)
