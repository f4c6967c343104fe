"""Node filters: one parser and one matcher, used by the portal and by every node."""

from agents.filters.compound import (
    And,
    Expr,
    FactExpr,
    NameExpr,
    Not,
    Or,
    parse_compound,
    tokenize,
)
from agents.filters.errors import FilterSyntaxError
from agents.filters.model import Filter
from agents.filters.safe_regex import MAX_REGEX_LENGTH, compile_safe
from agents.filters.terms import (
    OPERATORS,
    FactTerm,
    Node,
    NodeView,
    fact_matches,
    lookup_fact,
    name_matches,
    parse_fact_term,
)

__all__ = [
    "MAX_REGEX_LENGTH",
    "OPERATORS",
    "And",
    "Expr",
    "FactExpr",
    "FactTerm",
    "Filter",
    "FilterSyntaxError",
    "NameExpr",
    "Node",
    "NodeView",
    "Not",
    "Or",
    "compile_safe",
    "fact_matches",
    "lookup_fact",
    "name_matches",
    "parse_compound",
    "parse_fact_term",
    "tokenize",
]
