"""The search columns hold what the nodes' matcher reads, and every writer keeps them so.

The database half runs on the configured database; the PostgreSQL-only checks (``jsonb``'s
own form, the class and agent names) skip elsewhere. Run them with
``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/switchboard pytest tests/inventory``.
"""

from __future__ import annotations

import importlib
import json
import math
import secrets
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.filters import FactTerm, Filter, fact_matches
from agents.filters.terms import MISSING, as_number, lookup_fact
from portal.inventory.models import Node
from portal.inventory.search import SEARCH_FIELDS, jsonb_form, search_columns, stored_form
from portal.inventory.services import record_registrations

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="runs with DATABASE_URL pointing at PostgreSQL"
)

# -- what the columns hold, checked against the matcher itself (no database) ------------------

KEYS = st.sampled_from(["a", "b", "a.b", "c", "", "é", "bb", "٣"])
SCALARS = st.one_of(
    st.text("ab1.- Bé٣\n", max_size=4),
    st.sampled_from(["5", " 5 ", "1e400", "1e-400", "٣", "true", "None", "-0"]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1.5e20, -0.0, 1e-7, 100.0]),
    st.booleans(),
    st.none(),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)
FACTS = st.dictionaries(KEYS, JSON_VALUES, max_size=5)
# Every name a filter could ask about these facts, and some nobody has.
NAMES = ["a", "b", "c", "a.b", "a.a", "a.b.a", "a.b.b", "b.a", "a..b", "a.", "é.a", "x", "٣"]


def _texts(value: Any) -> list[str]:
    """The texts fact_matches compares: str() of the value or of each element, booleans
    lower-case."""
    candidates = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in candidates]


@given(facts=FACTS, vendor=st.sampled_from(["postgresql", "sqlite"]))
@settings(max_examples=200, deadline=None)
def test_columns_hold_each_name_the_matcher_resolves(facts, vendor):
    stored = stored_form(facts, vendor)
    columns = search_columns(facts, vendor)
    texts, numbers, lists = columns["fact_text"], columns["fact_number"], columns["fact_lists"]
    for name in {*NAMES, *texts, *lists}:
        value = lookup_fact(stored, name)
        if value is MISSING or value is None:
            assert name not in texts and name not in numbers and name not in lists, name
            continue
        expected = _texts(value)
        if isinstance(value, list):
            assert name not in texts and name not in numbers, name
            assert [element["t"] for element in lists[name]] == expected, name
            assert [element.get("n") for element in lists[name]] == [
                as_number(t) for t in expected
            ], name
        else:
            assert name not in lists, name
            assert texts[name] == expected[0], name
            assert numbers.get(name) == as_number(expected[0]), name
        for text in expected:  # the matcher agrees that each text equals itself
            assert fact_matches(FactTerm(name, "==", text), stored), (name, text)


@given(facts=FACTS)
@settings(max_examples=100, deadline=None)
def test_columns_are_plain_json(facts):
    columns = search_columns(facts, "postgresql")
    assert json.loads(json.dumps(columns, allow_nan=False)) == columns


def test_columns_of_a_nested_and_listed_fact_set():
    facts = {
        "os": {"name": "debian", "release": {"major": "12"}},
        "os.name": "flat wins",
        "cpus": " 4 ",
        "tags": ["blue", 3, None, True, {"k": 1}],
        "nothing": None,
        "virtual": False,
    }
    columns = search_columns(facts, "sqlite")
    assert columns["fact_text"] == {
        "os": "{'name': 'debian', 'release': {'major': '12'}}",
        "os.name": "flat wins",
        "os.release": "{'major': '12'}",
        "os.release.major": "12",
        "cpus": " 4 ",
        "virtual": "false",
    }
    assert columns["fact_number"] == {"os.release.major": 12.0, "cpus": 4.0}
    assert columns["fact_lists"] == {
        "tags": [
            {"t": "blue"},
            {"t": "3", "n": 3.0},
            {"t": "None"},
            {"t": "true"},
            {"t": "{'k': 1}"},
        ]
    }


def test_jsonb_form_orders_keys_and_prints_numbers_as_postgresql():
    assert list(jsonb_form({"bb": 1, "é": 2, "a": 3, "c": 4})) == ["a", "c", "bb", "é"]
    assert jsonb_form(1e16) == 10**16 and isinstance(jsonb_form(1e16), int)
    assert jsonb_form(1.2345678901234567e20) == 123456789012345670000
    assert math.copysign(1, jsonb_form(-0.0)) == 1
    assert jsonb_form(1e-7) == 1e-7


# -- jsonb_form is what PostgreSQL gives back ------------------------------------------------

JSONB_VALUES = st.recursive(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**80), 2**80),
        st.text("ab1é٣ \n", max_size=3),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text("abé٣", max_size=3), inner, max_size=4),
    ),
    max_leaves=10,
)


@needs_postgresql
@pytest.mark.django_db
@given(value=JSONB_VALUES)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_jsonb_form_is_what_postgresql_returns(value):
    with connection.cursor() as cursor:
        cursor.execute("SELECT (%s::jsonb)::text", [json.dumps(value)])
        returned = json.loads(cursor.fetchone()[0])
    # repr tells int from float and shows key order, both of which str() prints.
    assert repr(jsonb_form(value)) == repr(returned)


# -- every writer fills the columns ----------------------------------------------------------


def _assert_columns_follow_facts() -> None:
    nodes = list(Node.objects.all())
    assert nodes
    for node in nodes:
        columns = {name: getattr(node, name) for name in SEARCH_FIELDS}
        assert columns == search_columns(node.facts, connection.vendor), node.identity


FACT_SET = {"cpus": 8, "os": {"name": "debian"}, "tags": ["a", "2"], "load": 1e16}


@pytest.mark.django_db
def test_record_registrations_fills_and_refreshes_them(make_registration):
    record_registrations([make_registration("n1", facts=FACT_SET, msgtime=1.0)])
    _assert_columns_follow_facts()
    assert Node.objects.get().fact_text["os.name"] == "debian"
    record_registrations([make_registration("n1", facts={"cpus": "two"}, msgtime=2.0)])
    node = Node.objects.get()
    assert node.fact_text == {"cpus": "two"}
    assert node.fact_number == node.fact_lists == {}


@pytest.mark.django_db
def test_save_create_and_bulk_writes_fill_them():
    now = timezone.now()
    times = {"first_seen": now, "last_seen": now, "registered_at": now}
    Node.objects.create(identity="created", facts=FACT_SET, **times)
    Node.objects.bulk_create([Node(identity="bulk", facts={"v": "1"}, **times)])
    _assert_columns_follow_facts()

    node = Node.objects.get(identity="created")
    node.facts = {"v": [1, "x"]}
    node.save(update_fields=["facts"])
    _assert_columns_follow_facts()
    assert Node.objects.get(identity="created").fact_lists == {
        "v": [{"t": "1", "n": 1.0}, {"t": "x"}]
    }

    nodes = list(Node.objects.all())
    for node in nodes:
        node.facts = {"w": True}
    Node.objects.bulk_update(nodes, ["facts"])
    _assert_columns_follow_facts()
    assert [node.fact_text for node in Node.objects.all()] == [{"w": "true"}] * 2


@pytest.mark.django_db
def test_facts_cannot_change_in_sql_alone():
    with pytest.raises(TypeError, match="search columns"):
        Node.objects.update(facts={"v": 1})


@pytest.mark.django_db
def test_the_migration_backfills_existing_rows():
    now = timezone.now()
    Node.objects.create(
        identity="old", facts=FACT_SET, first_seen=now, last_seen=now, registered_at=now
    )
    Node.objects.update(fact_text={}, fact_number={}, fact_lists={})  # as before 0004
    migration = importlib.import_module("portal.inventory.migrations.0004_search_columns")
    state = MigrationExecutor(connection).loader.project_state(("inventory", "0004_search_columns"))
    # The backfill only reads the editor's connection; no schema change to wrap.
    migration.backfill_search_columns(state.apps, connection.schema_editor())
    _assert_columns_follow_facts()


# -- PostgreSQL: the class and agent names a name regex runs over ----------------------------


@needs_postgresql
@pytest.mark.django_db
def test_every_written_class_and_agent_name_is_listed(make_registration):
    record_registrations(
        [make_registration("n1", classes=["base", "role::web"], agents=["rpcutil"], msgtime=1.0)]
    )
    record_registrations(  # an upsert: the UPDATE side of ON CONFLICT
        [make_registration("n1", classes=["role::db"], agents=["service"], msgtime=2.0)]
    )
    now = timezone.now()
    Node.objects.create(
        identity="n2",
        classes=["bare"],
        agents=[],
        first_seen=now,
        last_seen=now,
        registered_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, name FROM inventory_node_name")
        names = set(cursor.fetchall())
    assert {
        ("class", "base"),
        ("class", "role::web"),
        ("class", "role::db"),
        ("class", "bare"),
        ("agent", "rpcutil"),
        ("agent", "service"),
    } <= names


@needs_postgresql
@pytest.mark.django_db
def test_a_name_too_long_for_a_btree_is_listed_and_found(make_registration):
    long_name = "role::" + secrets.token_hex(5000)  # 10 kB that do not compress
    record_registrations([make_registration("n1", classes=["base", long_name], msgtime=1.0)])
    found = Node.objects.matching(Filter.parse(f"/{long_name[-30:]}$/"))
    assert list(found.values_list("identity", flat=True)) == ["n1"]
