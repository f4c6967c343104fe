"""What the filter builder offers while an operator types: known fact names, and values seen.

Both read every node's JSON. At 100,000 nodes on PostgreSQL (measured on a shared 2-core
machine; 11 facts a node, then 67) the names took 0.2-2 s and one fact's values 0.05-0.3 s,
about what a bare ``GROUP BY facts->>'customer'`` costs: decompressing each node's ``facts``
dominates. So the names list and each fact's value counts are kept in Django's cache for a
short while (then answers take well under a millisecond), and the job form asks for the
names as it opens. A fact with more distinct values than ``MAX_CACHED_VALUES`` (addresses,
serial numbers) keeps only its most common ones and answers other prefixes from the
database.

A user who may not see every node (``portal.inventory.visibility``) passes their scope as
``within``: the answers then come from a query bounded by it (the scope's WHERE on the node
table, as ``Node.objects.matching`` writes it), cached under the scope's text, so nothing
about a node outside it (a fact name, a value) is offered. The unbounded answers, cached for
everyone who sees every node, are never read for them.

Values are the text the filters compare (``agents.filters.terms``): ``true``/``false`` for
booleans, ``None`` for a null list element, each element of a list fact on its own. Objects
never match a value, so they are never offered.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection

from agents.filters import Filter, FilterSyntaxError
from agents.filters.terms import as_text, make_fact_term
from portal.inventory.models import Node
from portal.inventory.querysets import NodeQuerySet

FACT_NAMES_CACHE_SECONDS = 120
VALUES_CACHE_SECONDS = 30
MAX_CACHED_VALUES = 5000
# Distinct whole values (a list counts as one) read back to be counted in Python; a fact with
# more is counted by the database instead (slower, but only for addresses, serials, ...).
MAX_GROUPS = 20000
MAX_FACT_NAMES = 5000
# Nested fact names (``os.release.major``) are read from the newest registrations only: walking
# every node's nested objects in SQL costs seconds, and structured facts have the same shape
# across a fleet.
NESTED_SAMPLE_SIZE = 200
MAX_NESTED_DEPTH = 4
MAX_LIMIT = 100
VALUE_KINDS = ("fact", "class", "agent", "identity")
_CACHE_PREFIX = "switchboard:inventory:autocomplete:"


class BadValuesQuery(ValueError):
    """An autocomplete request that cannot be answered (unknown kind, bad fact name)."""


@dataclass(frozen=True)
class FactName:
    """A fact name some node has; ``nodes`` counts them (None for names found in a sample)."""

    name: str
    nodes: int | None


@dataclass(frozen=True)
class SeenValue:
    """A value a fact (or class, agent, identity) has, and on how many nodes."""

    value: str
    nodes: int


@dataclass(frozen=True)
class ValueMatches:
    """The values offered for a prefix; ``complete`` when no other value has that prefix."""

    values: list[SeenValue]
    complete: bool


def known_fact_names(prefix: str = "", within: Filter | None = None) -> list[FactName]:
    """Every fact name in the inventory starting with ``prefix`` (any case), sorted.

    Top-level names come with the number of nodes that have them; dotted names of nested
    facts are found in the newest registrations. Only the nodes ``within`` matches are read
    (None: every node). Cached for ``FACT_NAMES_CACHE_SECONDS``.
    """
    names: list[FactName] = cache.get_or_set(
        _cache_key("fact-names", within),
        lambda: _load_fact_names(within),
        FACT_NAMES_CACHE_SECONDS,
    )
    folded = prefix.lower()
    return [name for name in names if name.name.lower().startswith(folded)]


def seen_values(
    kind: str, fact: str = "", prefix: str = "", limit: int = 20, within: Filter | None = None
) -> ValueMatches:
    """The most common values starting with ``prefix`` (any case), most nodes first.

    ``kind`` is ``fact`` (then ``fact`` names it, dotted for nested facts), ``class``,
    ``agent`` or ``identity``. Raises ``BadValuesQuery`` for anything else. Only the nodes
    ``within`` matches are counted (None: every node).
    """
    check_values_query(kind, fact)
    limit = max(1, min(limit, MAX_LIMIT))
    if "\x00" in prefix:  # no stored text holds NUL (PostgreSQL refuses it as a parameter)
        return ValueMatches([], complete=True)
    if kind == "identity":
        return _identities(prefix, limit, within)
    counts, all_counted = _cached_counts(kind, fact, within)
    folded = prefix.lower()
    found = [SeenValue(v, n) for v, n in counts if v.lower().startswith(folded)]
    if len(found) > limit:
        return ValueMatches(found[:limit], complete=False)
    if all_counted:
        return ValueMatches(found, complete=True)
    # The cache holds only the commonest values of this fact; rarer ones are in the database.
    rows = _value_counts(kind, fact, folded, limit + 1, within)
    return ValueMatches(rows[:limit], complete=len(rows) <= limit)


def check_values_query(kind: str, fact: str) -> None:
    """Raises ``BadValuesQuery`` unless ``kind`` is known and, for a fact, ``fact`` valid."""
    if kind not in VALUE_KINDS:
        raise BadValuesQuery(f"unknown kind {kind!r}; expected one of {', '.join(VALUE_KINDS)}")
    if kind == "fact":
        check_fact_name(fact)


def check_fact_name(fact: str) -> None:
    """Raises ``BadValuesQuery`` unless ``fact`` is a name the filter language accepts."""
    try:
        make_fact_term(fact, "==", "x")
    except FilterSyntaxError as exc:
        raise BadValuesQuery(exc.message) from None


# -- the nodes read --------------------------------------------------------------------------

# A FROM item for the nodes read and its parameters.
NodeSource = tuple[str, list[Any]]


def _nodes(within: Filter | None) -> NodeQuerySet:
    """The nodes ``within`` matches (every node for None)."""
    nodes: NodeQuerySet = Node.objects.all()
    return nodes if within is None else nodes.matching(within)


def _node_source(within: Filter | None) -> NodeSource:
    """The nodes to read as a FROM item (aliased ``n`` by the caller) and its parameters:
    the table itself, or the subquery of the nodes ``within`` matches, with the columns
    read here."""
    if within is None:
        return "inventory_node", []
    query = _nodes(within).order_by().values("id", "identity", "facts", "classes", "agents")
    sql, params = query.query.sql_with_params()
    return f"({sql})", list(params)


def _cache_key(name: str, within: Filter | None) -> str:
    """The cache key of an answer about every node, or about the nodes ``within`` matches."""
    if within is None:
        return _CACHE_PREFIX + name
    digest = hashlib.sha256(within.describe().encode()).hexdigest()
    return f"{_CACHE_PREFIX}within:{digest}:{name}"


# -- fact names ------------------------------------------------------------------------------


def _load_fact_names(within: Filter | None = None) -> list[FactName]:
    source, params = _node_source(within)
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT k, count(*) FROM {source} AS n CROSS JOIN LATERAL jsonb_object_keys("  # noqa: S608
            "CASE WHEN jsonb_typeof(n.facts) = 'object' THEN n.facts ELSE '{}' END) AS k "
            "GROUP BY k ORDER BY k LIMIT %s"
        )
    else:
        sql = (
            f"SELECT e.key, count(*) FROM {source} AS n, json_each(n.facts) AS e "  # noqa: S608
            "WHERE json_type(n.facts) = 'object' GROUP BY e.key ORDER BY e.key LIMIT %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, MAX_FACT_NAMES])
        counted = {name: count for name, count in cursor.fetchall()}
    nested: set[str] = set()
    newest = _nodes(within).order_by("-last_seen").values_list("facts", flat=True)
    for facts in newest[:NESTED_SAMPLE_SIZE]:
        if isinstance(facts, dict):
            nested.update(_nested_names(facts, "", 1))
    names = [FactName(name, count) for name, count in counted.items()]
    names += [FactName(name, None) for name in nested - counted.keys()]
    return sorted(names, key=lambda n: n.name)[:MAX_FACT_NAMES]


def _nested_names(facts: dict[str, Any], prefix: str, depth: int) -> Iterable[str]:
    """``a.b`` for every key ``b`` of an object fact ``a``, recursively (not ``a`` itself)."""
    for key, value in facts.items():
        if isinstance(value, dict) and depth < MAX_NESTED_DEPTH:
            for sub in value:
                yield f"{prefix}{key}.{sub}"
            yield from _nested_names(value, f"{prefix}{key}.", depth + 1)


# -- values ----------------------------------------------------------------------------------


def _cached_counts(
    kind: str, fact: str, within: Filter | None
) -> tuple[list[tuple[str, int]], bool]:
    """The commonest values (up to ``MAX_CACHED_VALUES``) and whether that is all of them."""
    key = _cache_key("values:" + hashlib.sha256(f"{kind}\0{fact}".encode()).hexdigest(), within)

    def load() -> tuple[list[tuple[str, int]], bool]:
        rows = _value_counts(kind, fact, "", MAX_CACHED_VALUES + 1, within)
        # Plain tuples: a cache pickles the whole list on every read.
        return [(v.value, v.nodes) for v in rows[:MAX_CACHED_VALUES]], len(
            rows
        ) <= MAX_CACHED_VALUES

    result: tuple[list[tuple[str, int]], bool] = cache.get_or_set(key, load, VALUES_CACHE_SECONDS)
    return result


def _identities(prefix: str, limit: int, within: Filter | None) -> ValueMatches:
    found = list(
        _nodes(within)
        .filter(identity__istartswith=prefix)
        .order_by("identity")
        .values_list("identity", flat=True)[: limit + 1]
    )
    return ValueMatches([SeenValue(i, 1) for i in found[:limit]], complete=len(found) <= limit)


def _value_counts(
    kind: str, fact: str, prefix: str, limit: int, within: Filter | None = None
) -> list[SeenValue]:
    """Values with their node counts, most nodes first, then by value; ``prefix`` lower-case."""
    source = _node_source(within)
    if connection.vendor != "postgresql":
        return _sqlite_value_counts(kind, fact, prefix, limit, source)
    if not prefix:
        counts = _pg_grouped_counts(kind, fact, source)
        if counts is not None:
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            return [SeenValue(value, count) for value, count in ordered[:limit]]
    sql, params = _pg_values_sql(kind, fact, prefix, limit, source)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [SeenValue(value, count) for value, count in cursor.fetchall()]


def _pg_grouped_counts(kind: str, fact: str, source: NodeSource) -> Counter[str] | None:
    """Every value's node count from whole values grouped in SQL, lists unnested here.

    The cheapest way through 100,000 nodes: each node's value is read once and only the
    distinct values (a list counts as one) leave the database. None when there are more
    than ``MAX_GROUPS`` of them; the database then unnests (``_pg_values_sql``).
    """
    if kind == "fact":
        value_sql, params = _pg_fact_value(fact)
    else:
        value_sql, params = ("n.classes" if kind == "class" else "n.agents"), []
    nodes, node_params = source
    sql = (
        f"SELECT s.v, count(*) FROM (SELECT {value_sql} AS v FROM {nodes} AS n) AS s "  # noqa: S608
        "GROUP BY s.v LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *node_params, MAX_GROUPS + 1])
        rows = cursor.fetchall()
    if len(rows) > MAX_GROUPS:
        return None
    counts: Counter[str] = Counter()
    for raw, count in rows:
        # Django has psycopg hand jsonb back as its text.
        value = json.loads(raw) if isinstance(raw, str) else raw
        for text in value_texts(kind, value):
            counts[text] += count
    return counts


def value_texts(kind: str, value: Any) -> set[str]:
    """The texts one node's value offers: its own, or each of a list's elements once."""
    if kind != "fact":
        names = value if isinstance(value, list) else [value]
        return {name for name in names if isinstance(name, str)}
    if value is None or isinstance(value, dict):
        return set()  # a missing or null fact, or an object, never matches a value
    elements = value if isinstance(value, list) else [value]
    return {as_text(e) for e in elements if not isinstance(e, dict | list)}


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# jsonb text of one element as Python's str() prints it; NULL for objects and lists (as in
# portal.inventory.filtering).
_PG_ELEMENT_TEXT = (
    "CASE jsonb_typeof(e.j) WHEN 'null' THEN 'None' WHEN 'object' THEN NULL "
    "WHEN 'array' THEN NULL ELSE e.j #>> '{}' END"
)


def _pg_fact_value(fact: str) -> tuple[str, list[Any]]:
    """SQL for the fact's jsonb as ``lookup_fact`` finds it: flat key first, then nested."""
    parts = fact.split(".")
    if len(parts) == 1:
        return "(n.facts -> %s)", [fact]
    objects = " AND ".join(["jsonb_typeof(n.facts #> %s::text[]) = 'object'"] * (len(parts) - 1))
    sql = (
        "(CASE WHEN (n.facts -> %s) IS NOT NULL THEN n.facts -> %s "
        f"WHEN {objects} THEN n.facts #> %s::text[] END)"
    )
    return sql, [fact, fact, *[parts[:i] for i in range(1, len(parts))], parts]


def _pg_values_sql(
    kind: str,
    fact: str,
    prefix: str,
    limit: int,
    source: NodeSource,
) -> tuple[str, list[Any]]:
    if kind == "fact":
        value_sql, params = _pg_fact_value(fact)
        scalar_types, element = "('string', 'number', 'boolean')", _PG_ELEMENT_TEXT
    else:
        # A class or agent is a string; a list of them counts each name once per node.
        value_sql, params = ("n.classes" if kind == "class" else "n.agents"), []
        scalar_types, element = (
            "('string')",
            "CASE jsonb_typeof(e.j) WHEN 'string' THEN e.j #>> '{}' END",
        )
    where = "x.t IS NOT NULL" + (" AND lower(x.t) LIKE %s" if prefix else "")
    # One pass over the table reads each node's value once (decompressing ``facts`` is most
    # of the cost); scalars are counted straight away, and only lists are unnested: a
    # per-row subquery for every node cost 2-7 times as much at 100,000 nodes. A missing or
    # null fact never matches, so it is not counted. Every piece of SQL here is a constant of
    # this module or Django's for the nodes in a scope; names and values travel as parameters.
    nodes, node_params = source
    sql = (
        f"WITH f AS MATERIALIZED (SELECT n.id, {value_sql} AS v FROM {nodes} AS n) "  # noqa: S608
        "SELECT x.t, count(*) AS nodes FROM ("
        f"SELECT f.v #>> '{{}}' AS t FROM f WHERE jsonb_typeof(f.v) IN {scalar_types} "
        "UNION ALL "
        f"SELECT a.t FROM (SELECT DISTINCT f.id, {element} AS t FROM f "
        "CROSS JOIN LATERAL jsonb_array_elements(f.v) AS e(j) "
        "WHERE jsonb_typeof(f.v) = 'array') AS a"
        f") AS x WHERE {where} "
        'GROUP BY x.t ORDER BY nodes DESC, x.t COLLATE "C" LIMIT %s'
    )
    return sql, [*params, *node_params, *([_like_prefix(prefix)] if prefix else []), limit]


def _sqlite_path(parts: list[str]) -> str:
    return "$" + "".join(f'."{part}"' for part in parts)


def _sqlite_value_counts(
    kind: str,
    fact: str,
    prefix: str,
    limit: int,
    source: NodeSource,
) -> list[SeenValue]:
    """SQLite's JSON functions find the elements; Python prints them as the nodes do."""
    if kind == "fact":
        parts = fact.split(".")
        flat = _sqlite_path([fact])
        objects = " AND ".join(["json_type(n.facts, %s) = 'object'"] * (len(parts) - 1)) or "0"
        path_sql = (
            f"CASE WHEN json_type(n.facts, %s) IS NOT NULL THEN %s WHEN {objects} THEN %s END"
        )
        path_params = [flat, flat, *[_sqlite_path(parts[:i]) for i in range(1, len(parts))]]
        path_params.append(_sqlite_path(parts))
        column = "n.facts"
    else:
        path_sql, path_params, column = "'$'", [], "n.classes" if kind == "class" else "n.agents"
    # Per node each distinct element once; a scalar fact is its own single element.
    nodes, node_params = source
    sql = (
        "SELECT e.type, e.value, count(*) FROM (SELECT DISTINCT n.id, e.type, e.value "  # noqa: S608
        f"FROM {nodes} AS n, json_each({column}, {path_sql}) AS e "
        f"WHERE json_type({column}, {path_sql}) NOT IN ('null', 'object')) AS e "
        "GROUP BY e.type, e.value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*node_params, *path_params, *path_params])
        rows = cursor.fetchall()
    counts: Counter[str] = Counter()
    for json_type, value, count in rows:
        text = (
            _sqlite_text(json_type, value)
            if kind == "fact"
            else (value if json_type == "text" else None)
        )
        if text is not None and text.lower().startswith(prefix):
            counts[text] += count
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [SeenValue(value, count) for value, count in ordered[:limit]]


def _sqlite_text(json_type: str, value: Any) -> str | None:
    """The text ``agents.filters.terms`` compares for one JSON element."""
    if json_type in ("true", "false"):
        return json_type
    if json_type == "null":
        return "None"
    if json_type in ("object", "array"):
        return None
    return str(value)
