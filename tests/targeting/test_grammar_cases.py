"""The filter grammar's three implementations, held together by one table of cases.

``grammar_cases.json`` holds a fixed inventory and expressions with what each must give: the
canonical text (``describe``) and the inventory nodes it selects (``matches``), or the column
of its syntax error. Every case runs against

* the Python parser and matcher (``agents.filters``): the reference, since a node decides for
  itself whether a request is for it;
* the SQL translation (``Node.objects.matching``, ``portal.inventory.filtering``) on the test
  database: SQLite by default, PostgreSQL with
  ``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/switchboard_grammar``;
* the browser's parser (``static/switchboard/filter_language.js``), run in Node without a page
  by ``grammar_runner.mjs``: the same tree (so the same matches), canonical text and error
  column. Skipped without ``node`` on PATH (failed with ``SWITCHBOARD_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from agents.filters import (
    And,
    Expr,
    FactExpr,
    Filter,
    FilterSyntaxError,
    NameExpr,
    Node,
    Not,
    Or,
    parse_compound,
)
from agents.filters.terms import is_regex_literal
from agents.protocol import Registration
from harness.services import require_service
from portal.inventory.filtering import filter_q
from portal.inventory.models import Node as InventoryNode
from portal.inventory.pg_regex import UnsupportedFilter
from portal.inventory.services import record_registrations

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "grammar_cases.json"
RUNNER = HERE / "grammar_runner.mjs"
TABLE: dict[str, Any] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
INVENTORY: list[dict[str, Any]] = TABLE["inventory"]
CASES: list[dict[str, Any]] = TABLE["cases"]
NODES = [Node(n["identity"], n["facts"], n["classes"], n["agents"]) for n in INVENTORY]


def case_id(index: int, case: dict[str, Any]) -> str:
    """``007:customer=acme``: the case's place in the table and its text, printable."""
    text = case["expression"].encode("unicode_escape").decode("ascii")
    return f"{index:03d}:{text[:40]}"


def cases(*, parsing: bool | None = None) -> list[Any]:
    """The table's cases as pytest params; ``parsing`` keeps only those that parse (True) or
    fail (False)."""
    return [
        pytest.param(case, id=case_id(index, case))
        for index, case in enumerate(CASES)
        if parsing is None or ("error" not in case) == parsing
    ]


def test_the_table_is_well_formed() -> None:
    identities = {node.identity for node in NODES}
    assert len(identities) == len(NODES) == 12
    assert len(CASES) >= 60
    texts = [case["expression"] for case in CASES]
    assert len(set(texts)) == len(texts), "an expression appears twice"
    for case in CASES:
        if "error" in case:
            assert {"column", "message"} <= case["error"].keys(), case
            assert "matches" not in case and "describe" not in case, case
        else:
            assert case["matches"] == sorted(set(case["matches"]) & identities), case
            assert "js" not in case, case


def tree_of(expr: Expr | None) -> dict[str, Any] | None:
    """A parsed expression in the shape filter_language.js gives its trees."""
    if expr is None:
        return None
    if isinstance(expr, FactExpr):
        term = expr.term
        return {"type": "fact", "fact": term.fact, "op": term.operator, "value": term.value}
    if isinstance(expr, NameExpr):
        regex = is_regex_literal(expr.value)
        value = expr.value[1:-1] if regex else expr.value
        return {"type": "name", "kind": expr.kind, "value": value, "regex": regex}
    if isinstance(expr, Not):
        return {"type": "not", "item": tree_of(expr.item)}
    if isinstance(expr, And | Or):
        kind = "and" if isinstance(expr, And) else "or"
        return {"type": kind, "items": [tree_of(item) for item in expr.items]}
    raise TypeError(f"unknown expression {type(expr).__name__}")


def python_tree(text: str) -> dict[str, Any] | None:
    compound = Filter.parse(text).compound
    return tree_of(None if compound is None else parse_compound(compound))


def nodes_matching(wanted: Filter) -> list[str]:
    """The identities of the inventory's nodes that select themselves for ``wanted``."""
    return sorted(node.identity for node in NODES if wanted.matches(node))


def check_error(case: dict[str, Any], message: str, column: int | None) -> None:
    assert column == case["error"]["column"], message
    assert case["error"]["message"] in message


# -- Python: the parser and the nodes' own matching --------------------------------------------


@pytest.mark.parametrize("case", cases())
def test_python(case: dict[str, Any]) -> None:
    text = case["expression"]
    if "error" in case:
        with pytest.raises(FilterSyntaxError) as raised:
            parse_compound(text)
        check_error(case, raised.value.message, raised.value.column)
        with pytest.raises(FilterSyntaxError) as raised:
            Filter.parse(text)
        assert raised.value.column == case["error"]["column"]
        return
    wanted = Filter.parse(text)
    assert wanted.describe() == case["describe"]
    assert nodes_matching(wanted) == case["matches"]
    # The canonical text reads back as itself and selects the same nodes.
    again = Filter.parse(case["describe"])
    assert again.describe() == case["describe"]
    assert nodes_matching(again) == case["matches"]


# -- SQL: the inventory's translation, on the test database ------------------------------------


@pytest.fixture
def inventory(db: None) -> None:
    """The table's nodes, recorded as the portal records admitted registrations."""
    written = record_registrations(
        [Registration(**node, msgtime=1_700_000_000.0) for node in INVENTORY]
    )
    assert written == len(INVENTORY)


@pytest.mark.parametrize("case", cases(parsing=True))
def test_sql(case: dict[str, Any], inventory: None) -> None:
    wanted = Filter.parse(case["expression"])
    unsupported = case.get("postgresql") == "unsupported"
    # Whatever the database: the PostgreSQL translation refuses exactly what the table says.
    if unsupported:
        with pytest.raises(UnsupportedFilter, match="inventory database"):
            filter_q(wanted, "postgresql")
    else:
        filter_q(wanted, "postgresql")
    if connection.vendor == "postgresql" and unsupported:
        with pytest.raises(UnsupportedFilter):
            list(InventoryNode.objects.matching(wanted))
        return
    selected = InventoryNode.objects.matching(wanted).values_list("identity", flat=True)
    assert sorted(selected) == case["matches"]


# -- JavaScript: the browser's parser, in Node -------------------------------------------------


@pytest.fixture(scope="module")
def javascript() -> list[dict[str, Any]]:
    """What filter_language.js makes of every case, in table order (one Node process)."""
    node = shutil.which("node")
    require_service("Node.js", node is not None, "put `node` (Node.js 18 or later) on PATH")
    assert node is not None
    done = subprocess.run(
        [node, str(RUNNER), str(CASES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(CASES)
    return results


@pytest.mark.parametrize("case", cases())
def test_javascript(case: dict[str, Any], javascript: list[dict[str, Any]]) -> None:
    result = javascript[CASES.index(case)]
    assert "crash" not in result, result["crash"]
    if case.get("js") == "parses":
        # The browser leaves regexes to the server (its preview reports the error).
        assert "error" not in result, result["error"]
        return
    if "error" in case:
        assert "error" in result, f"the browser parses what the server refuses: {result}"
        check_error(case, result["error"]["message"], result["error"]["column"])
        return
    assert "error" not in result, result["error"]
    assert result["tree"] == python_tree(case["expression"])
    assert result["describe"] == case["describe"]
