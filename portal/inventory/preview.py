"""What a filter would select, for the job form's live preview."""

from __future__ import annotations

from typing import Any

from agents.filters import FactExpr, Filter, parse_compound
from agents.filters.compound import And, Expr, Not, Or
from agents.filters.terms import MISSING, lookup_fact
from portal.inventory.models import Node

PREVIEW_LIMIT = 20


def preview(filter: Filter, limit: int = PREVIEW_LIMIT) -> dict[str, Any]:
    """``{"count": n, "nodes": [...]}``: how many nodes match and the first ``limit`` by identity.

    Two queries (one COUNT, one SELECT ... LIMIT). Each node shows its identity, whether it
    is stale, and the facts the filter names (the ones that made it match).
    """
    matched = Node.objects.matching(filter)
    count = matched.count()
    names = filter_fact_names(filter)
    nodes = (
        [
            {
                "identity": node.identity,
                "stale": node.is_stale,
                "last_seen": node.last_seen.isoformat(),
                "facts": {
                    name: value
                    for name in names
                    if (value := lookup_fact(node.facts, name)) is not MISSING
                },
            }
            for node in matched.order_by("identity")[:limit]
        ]
        if count
        else []
    )
    return {"count": count, "nodes": nodes}


def filter_fact_names(filter: Filter) -> list[str]:
    """The fact names a filter mentions, in order of first mention."""
    names = [term.fact for term in filter.fact]
    if filter.compound is not None:
        names += _expr_fact_names(parse_compound(filter.compound))
    return list(dict.fromkeys(names))


def _expr_fact_names(expr: Expr) -> list[str]:
    if isinstance(expr, FactExpr):
        return [expr.term.fact]
    if isinstance(expr, Not):
        return _expr_fact_names(expr.item)
    if isinstance(expr, And | Or):
        return [name for item in expr.items for name in _expr_fact_names(item)]
    return []
