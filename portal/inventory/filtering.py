"""Filters as SQL over the inventory, so ``Node.objects.matching(f)`` runs in the database.

The result must equal ``Filter.matches`` for every node; each backend gets there its own way:

* PostgreSQL: native SQL over the search columns (``search``: each node's facts as the
  matcher reads them, texts and numbers computed in Python when the facts are written).
  ``==``/``!=`` are containment (``@>``, GIN-indexed) in ``fact_text``, or ``fact_number``
  when the value reads as a number, and ``fact_lists``. ``<``/``>``/``<=``/``>=`` compare
  ``float8`` numbers, else texts ``COLLATE "C"`` (code point order, as Python); regexes use
  ``~`` after ``pg_regex.to_postgres``. A scalar fact is one key lookup; only a list fact's
  elements go through ``jsonb_path_exists``. No sub-plan per row, so every predicate is
  parallel safe. Exact classes and agents use ``@>``; a class or agent regex runs over the
  distinct names (``inventory_node_name``) and ``?|`` finds their nodes in the GIN index.
* SQLite (the embedded profile): the same ``agents.filters`` functions registered as SQL
  functions on each connection (``apps.py``), so the semantics are Python's by construction
  while counting and paging still happen in SQL.

Known differences on PostgreSQL (nodes are the reference): the regex differences listed in
``pg_regex``; text containing NUL cannot be stored at all; and ``jsonb`` stores facts in its
own form (``search.jsonb_form``: ``1e+16`` comes back as ``10000000000000000``), which is
the form both the inventory and ``Filter.matches`` on a stored Node see.
"""

from __future__ import annotations

import functools
import json
import operator
from typing import Any

from django.db.models import BooleanField, F, Func, Q

from agents.filters import (
    And,
    Expr,
    FactExpr,
    FactTerm,
    Filter,
    NameExpr,
    Not,
    Or,
    fact_matches,
    name_matches,
    parse_compound,
)
from agents.filters.terms import as_number  # the nodes' own number rule
from portal.inventory.pg_regex import UnsupportedFilter, to_postgres

__all__ = ["UnsupportedFilter", "filter_q", "sqlite_functions"]

# Placeholders a predicate's SQL may use, and the Node column each stands for.
_COLUMNS = {
    "facts": "facts",
    "text": "fact_text",
    "number": "fact_number",
    "lists": "fact_lists",
    "classes": "classes",
    "agents": "agents",
    "identity": "identity",
    "collectives": "collectives",
}


class NodePredicate(Func):
    """A boolean SQL snippet over Node columns, written ``{facts}``, ``{text}``... in ``sql``."""

    output_field = BooleanField()

    def __init__(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.placeholders = [name for name in _COLUMNS if "{" + name + "}" in sql]
        super().__init__(*(F(_COLUMNS[name]) for name in self.placeholders))
        self.sql = sql
        self.params = tuple(params)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql = self.sql
        for name, source in zip(self.placeholders, self.source_expressions, strict=True):
            col_sql, col_params = compiler.compile(source)
            assert not col_params, "a plain column has no parameters"
            sql = sql.replace("{" + name + "}", col_sql)
        return "(" + sql + ")", list(self.params)


def filter_q(filter: Filter, vendor: str) -> Q:
    """The Q selecting exactly the nodes ``filter`` matches, for a ``postgresql`` or ``sqlite`` DB.

    Raises ``UnsupportedFilter`` for another database, or on PostgreSQL for a regex feature it
    cannot evaluate as Python does.
    """
    if vendor not in ("postgresql", "sqlite"):
        raise UnsupportedFilter(f"the inventory cannot filter nodes on a {vendor} database")
    parts = [_fact_q(term, vendor) for term in filter.fact]
    parts += [_name_q("class", value, vendor) for value in filter.cf_class]
    parts += [_name_q("agent", value, vendor) for value in filter.agent]
    if filter.identity:
        parts.append(
            functools.reduce(
                operator.or_, (_name_q("identity", i, vendor) for i in filter.identity)
            )
        )
    if filter.compound is not None:
        parts.append(_expr_q(parse_compound(filter.compound), vendor))
    return functools.reduce(operator.and_, parts, Q())


def _expr_q(expr: Expr, vendor: str) -> Q:
    if isinstance(expr, FactExpr):
        return _fact_q(expr.term, vendor)
    if isinstance(expr, NameExpr):
        return _name_q(expr.kind, expr.value, vendor)
    if isinstance(expr, Not):
        return ~_expr_q(expr.item, vendor)
    if isinstance(expr, And):
        return functools.reduce(operator.and_, (_expr_q(i, vendor) for i in expr.items))
    if isinstance(expr, Or):
        return functools.reduce(operator.or_, (_expr_q(i, vendor) for i in expr.items))
    raise TypeError(f"unknown filter expression {type(expr).__name__}")


# -- names: class, agent, identity -----------------------------------------------------------

_NAME_COLUMNS = {"class": "classes", "agent": "agents", "identity": "identity"}

# On PostgreSQL a class or agent regex is run over the distinct names (inventory_node_name,
# kept by a trigger, migration 0004), then the nodes holding any of the matches are found
# through the GIN index: once per name instead of once per element of every node's list.
_PG_NAME_REGEX_SQL = (
    "{%s} ?| ARRAY(SELECT n.name FROM inventory_node_name AS n WHERE n.kind = %%s AND n.name ~ %%s)"
)


def _name_q(kind: str, value: str, vendor: str) -> Q:
    column = _NAME_COLUMNS[kind]
    regex = len(value) >= 2 and value.startswith("/") and value.endswith("/")
    if kind == "identity":
        if not regex:
            return Q(identity=value)
        if vendor == "sqlite":
            return Q(identity__regex=value[1:-1])  # Django's SQLite REGEXP is re.search
        return Q(NodePredicate("{identity} ~ %s", (to_postgres(value[1:-1]),)))
    if vendor == "sqlite":
        return Q(NodePredicate(f"switchboard_name_matches(%s, {{{column}}})", (value,)))
    if not regex:
        return Q(**{f"{column}__contains": [value]})
    return Q(NodePredicate(_PG_NAME_REGEX_SQL % column, (kind, to_postgres(value[1:-1]))))


def collective_q(name: str, vendor: str) -> Q:
    """Nodes that registered as members of the collective ``name`` (an exact name)."""
    if vendor == "sqlite":
        return Q(NodePredicate("switchboard_name_matches(%s, {collectives})", (name,)))
    return Q(collectives__contains=[name])


# -- facts -----------------------------------------------------------------------------------


def _fact_q(term: FactTerm, vendor: str) -> Q:
    if vendor == "sqlite":
        return Q(
            NodePredicate(
                "switchboard_fact_matches({facts}, %s, %s, %s)",
                (term.fact, term.operator, term.value),
            )
        )
    if term.operator in ("==", "!="):
        return _pg_equality_q(term)
    return Q(NodePredicate(*_pg_fact_sql(term)))


def _pg_equality_q(term: FactTerm) -> Q:
    """``==``/``!=`` as containment in the search columns (GIN-indexed, no per-row work).

    When the value reads as a number, an element equals it exactly when its number does (an
    equal text reads as the same number); otherwise only an equal text can.
    """
    number = as_number(term.value)
    if number is None:
        scalar = Q(fact_text__contains={term.fact: term.value})
        element: dict[str, Any] = {"t": term.value}
    else:
        scalar = Q(fact_number__contains={term.fact: number})
        element = {"n": number}
    equal = scalar | Q(fact_lists__contains={term.fact: [element]})
    if term.operator == "==":
        return equal
    present = Q(fact_text__has_key=term.fact) | Q(fact_lists__has_key=term.fact)
    return present & ~equal  # present and not null, and no element equal


def _pg_fact_sql(term: FactTerm) -> tuple[str, tuple[Any, ...]]:
    """An ordering or regex term: a scalar fact is one key lookup (NULL when the fact is not
    a scalar), then a list fact's elements are searched with a JSON path."""
    name, op, value = term.fact, term.operator, term.value
    if op not in ("<", ">", "<=", ">=", "=~", "!~"):  # it is written into the SQL text
        raise ValueError(f"unexpected operator {op!r}")
    key = _jsonpath_string(name)
    number = None if op in ("=~", "!~") else as_number(value)
    variables: dict[str, Any] = {}
    if op in ("=~", "!~"):
        pattern = to_postgres(value)
        scalar, params = "({text} ->> %s) ~ %s", [name, pattern]
        # like_regex hands the pattern to the same regex engine, flags and collation as ~.
        path = f"$.{key}[*] ? (@.t like_regex {_jsonpath_string(pattern)})"
    elif number is None:
        scalar, params = f'({{text}} ->> %s) COLLATE "C" {op} %s', [name, value]
        path, variables = f"$.{key}[*] ? (@.t {op} $v)", {"v": value}
    else:
        # The nodes compare numerically when both sides read as numbers, else as text;
        # jsonpath compares strings by code point, as COLLATE "C" and Python do.
        scalar = (
            f'COALESCE(({{number}} ->> %s)::float8 {op} %s, ({{text}} ->> %s) COLLATE "C" {op} %s)'
        )
        params = [name, number, name, value]
        path = f"$.{key}[*] ? (@.n {op} $n || (!exists(@.n) && @.t {op} $v))"
        variables = {"n": number, "v": value}
    negate = "NOT " if op == "!~" else ""
    in_list = f"{{lists}} ? %s AND {negate}jsonb_path_exists({{lists}}, %s::jsonpath, %s::jsonb)"
    params += [name, path, json.dumps(variables)]
    # Never NULL (Django negates with NOT): a missing or null fact is false either way.
    return f"COALESCE({negate}({scalar}), {in_list})", tuple(params)


def _jsonpath_string(text: str) -> str:
    """``text`` as a double-quoted JSON path string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- SQLite: the nodes' own matcher as SQL functions -------------------------------------------


def _sqlite_fact_matches(facts: str | None, fact: str, op: str, value: str) -> bool:
    if facts is None:
        return False
    return fact_matches(FactTerm(fact, op, value), json.loads(facts))


def _sqlite_name_matches(pattern: str, names: str | None) -> bool:
    if names is None:
        return False
    return name_matches(pattern, json.loads(names))


def sqlite_functions() -> list[tuple[str, int, Any]]:
    """(name, arity, callable) for ``sqlite3.Connection.create_function``."""
    return [
        ("switchboard_fact_matches", 4, _sqlite_fact_matches),
        ("switchboard_name_matches", 2, _sqlite_name_matches),
    ]
