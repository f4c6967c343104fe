"""The filter builder's autocomplete: fact names and values seen (portal/inventory/autocomplete.py).

Runs on the configured database: SQLite by default, PostgreSQL with
``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/switchboard pytest tests/inventory``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.filters import Filter
from agents.filters.terms import quote_value
from portal.inventory import autocomplete
from portal.inventory.autocomplete import FactName, known_fact_names, seen_values
from portal.inventory.models import Node

pytestmark = pytest.mark.django_db

FACTS = "/api/inventory/facts/"
VALUES = "/api/inventory/values/"

NODES: dict[str, dict[str, Any]] = {
    "web01.dc1.example": {
        "facts": {
            "customer": "acme",
            "environment": "prod",
            "cpus": 8,
            "load": 0.5,
            "virtual": True,
            "tags": ["blue", "green", 3, None, {"deep": 1}, "blue"],
            "os": {"name": "debian", "release": {"major": "12"}},
            "dc.rack": "r1",
            "nothing": None,
        },
        "classes": ["base", "apache", "role::web"],
        "agents": ["rpcutil", "service"],
    },
    "web02.dc2.example": {
        "facts": {
            "customer": "acmeinc",
            "environment": "staging",
            "cpus": "16",
            "load": "high",
            "virtual": False,
            "tags": [],
            "os": {"name": "ubuntu", "release": {"major": "24"}},
            "dc": {"rack": "r9"},
        },
        "classes": ["base", "nginx", "role::web"],
        "agents": ["rpcutil"],
    },
    "db01.dc1.example": {
        "facts": {
            "customer": "globex",
            "environment": "prod",
            "cpus": 8,
            "tags": ["Blue"],
            "os": "rhel",
            "dc": {"rack": "r1"},
        },
        "classes": ["base", "mysql"],
        "agents": ["rpcutil", "package"],
    },
    "Db02.dc2.example": {
        "facts": {"customer": "Acme", "environment": "prod"},
        "classes": ["base", 7],
        "agents": [],
    },
}


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fleet() -> None:
    now = timezone.now()
    Node.objects.bulk_create(
        Node(
            identity=identity,
            first_seen=now,
            last_seen=now - timedelta(minutes=n),
            registered_at=now,
            **fields,
        )
        for n, (identity, fields) in enumerate(NODES.items())
    )


@pytest.fixture
def client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def values(kind: str, fact: str = "", prefix: str = "", limit: int = 20) -> list[tuple[str, int]]:
    return [(v.value, v.nodes) for v in seen_values(kind, fact, prefix, limit).values]


def test_fact_names_count_the_nodes_that_have_them(fleet):
    names = known_fact_names()
    assert [n.name for n in names] == sorted(n.name for n in names)
    by_name = {n.name: n.nodes for n in names}
    assert by_name["customer"] == 4
    assert by_name["environment"] == 4
    assert by_name["cpus"] == 3
    assert by_name["dc.rack"] == 1  # a flat key with a dot in it
    assert by_name["nothing"] == 1
    # Nested facts by their dotted names (from the newest registrations, not counted).
    assert by_name["os.name"] is None
    assert by_name["os.release"] is None
    assert by_name["os.release.major"] is None
    assert by_name["dc.rack"] == 1


def test_fact_names_filter_by_prefix_in_any_case(fleet):
    assert [n.name for n in known_fact_names("O")] == [
        "os",
        "os.name",
        "os.release",
        "os.release.major",
    ]
    assert known_fact_names("zzz") == []


def test_fact_names_are_cached(fleet, django_assert_num_queries):
    known_fact_names()
    with django_assert_num_queries(0):
        assert FactName("customer", 4) in known_fact_names("cust")


def test_fact_values_most_nodes_first(fleet):
    assert values("fact", "customer") == [("Acme", 1), ("acme", 1), ("acmeinc", 1), ("globex", 1)]
    assert values("fact", "environment") == [("prod", 3), ("staging", 1)]


def test_fact_values_prefix_ignores_case(fleet):
    assert values("fact", "customer", "ac") == [("Acme", 1), ("acme", 1), ("acmeinc", 1)]
    assert values("fact", "customer", "ACMEI") == [("acmeinc", 1)]
    assert values("fact", "customer", "x") == []


def test_fact_values_are_the_text_the_filters_compare(fleet):
    assert values("fact", "cpus") == [("8", 2), ("16", 1)]
    assert values("fact", "virtual") == [("false", 1), ("true", 1)]
    assert values("fact", "load") == [("0.5", 1), ("high", 1)]
    # List elements one by one, a node counted once per value; objects and a null fact never
    # match a value, so they are not offered; a null element is "None".
    assert values("fact", "tags") == [("3", 1), ("Blue", 1), ("None", 1), ("blue", 1), ("green", 1)]
    assert values("fact", "nothing") == []
    assert values("fact", "os") == [("rhel", 1)]
    assert values("fact", "missing") == []


def test_dotted_facts_read_flat_keys_first_then_nested_objects(fleet):
    assert values("fact", "os.name") == [("debian", 1), ("ubuntu", 1)]
    assert values("fact", "os.release.major") == [("12", 1), ("24", 1)]
    assert values("fact", "dc.rack") == [("r1", 2), ("r9", 1)]


def test_every_value_offered_selects_that_many_nodes(fleet):
    """Picking a value in the builder gives ``fact==value``: it must select what was counted."""
    for name in [n.name for n in known_fact_names()]:
        for value, count in values("fact", name, limit=100):
            wanted = Filter.parse(f"{name}=={quote_value(value)}")
            matched = Node.objects.matching(wanted).count()
            assert matched == count, (name, value)


def test_classes_agents_and_identities(fleet):
    assert values("class", prefix="") == [
        ("base", 4),
        ("role::web", 2),
        ("apache", 1),
        ("mysql", 1),
        ("nginx", 1),
    ]
    assert values("class", prefix="ROLE") == [("role::web", 2)]
    assert values("agent") == [("rpcutil", 3), ("package", 1), ("service", 1)]
    assert values("identity", prefix="d") == [("Db02.dc2.example", 1), ("db01.dc1.example", 1)]
    assert values("identity", prefix="web0", limit=1) == [("web01.dc1.example", 1)]


def test_complete_says_whether_more_values_have_the_prefix(fleet):
    assert seen_values("fact", "customer", "ac", limit=3).complete is True
    assert seen_values("fact", "customer", "ac", limit=2).complete is False
    assert seen_values("identity", "", "web", limit=2).complete is True
    assert seen_values("identity", "", "", limit=2).complete is False


def test_values_are_cached_per_fact(fleet, django_assert_num_queries):
    values("fact", "customer")
    with django_assert_num_queries(0):
        assert values("fact", "customer", "glo") == [("globex", 1)]


def test_facts_with_many_values_ask_the_database_for_rarer_prefixes(fleet, monkeypatch):
    monkeypatch.setattr(autocomplete, "MAX_CACHED_VALUES", 2)
    # The cache keeps the two commonest; a prefix none of them has is looked up.
    assert values("fact", "customer", "glob") == [("globex", 1)]
    assert values("fact", "customer", "acmei") == [("acmeinc", 1)]
    assert values("fact", "customer") == [("Acme", 1), ("acme", 1), ("acmeinc", 1), ("globex", 1)]
    assert seen_values("fact", "customer", "", limit=1).complete is False


def test_many_distinct_values_are_counted_by_the_database_alike(fleet, monkeypatch):
    """Past MAX_GROUPS whole values, PostgreSQL unnests and counts itself: same answers."""
    cases = [("fact", f) for f in ("customer", "tags", "cpus", "os.name", "dc.rack", "os")]
    cases += [("class", ""), ("agent", "")]
    grouped = {case: values(*case) for case in cases}
    cache.clear()
    monkeypatch.setattr(autocomplete, "MAX_GROUPS", 1)
    assert {case: values(*case) for case in cases} == grouped


@pytest.mark.parametrize(
    ("kind", "fact", "message"),
    [
        ("os", "", "unknown kind 'os'"),
        ("fact", "", "invalid fact name ''"),
        ("fact", "bad name", "invalid fact name 'bad name'"),
        ("fact", "x'; drop table inventory_node; --", "invalid fact name"),
    ],
)
def test_bad_requests_say_what_is_wrong(fleet, client, kind, fact, message):
    response = client.get(VALUES, {"kind": kind, "fact": fact})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_facts_api(fleet, client):
    response = client.get(FACTS)
    assert response.status_code == 200
    facts = response.json()["facts"]
    assert {"name": "customer", "nodes": 4} in facts
    assert {"name": "os.name", "nodes": None} in facts
    assert client.get(FACTS, {"q": "env"}).json() == {
        "facts": [{"name": "environment", "nodes": 4}]
    }


def test_values_api(fleet, client):
    response = client.get(VALUES, {"fact": "customer", "q": "ac", "limit": "2"})
    assert response.status_code == 200
    assert response.json() == {
        "kind": "fact",
        "fact": "customer",
        "q": "ac",
        "values": [{"value": "Acme", "nodes": 1}, {"value": "acme", "nodes": 1}],
        "complete": False,
    }
    classes = client.get(VALUES, {"kind": "class", "q": "ng"}).json()
    assert classes["values"] == [{"value": "nginx", "nodes": 1}]
    assert classes["fact"] is None and classes["complete"] is True


def test_limit_is_bounded(fleet, client):
    assert len(client.get(VALUES, {"kind": "identity", "limit": "0"}).json()["values"]) == 1
    assert len(client.get(VALUES, {"kind": "identity", "limit": "x"}).json()["values"]) == 4
    assert len(seen_values("identity", limit=10_000).values) == 4


def test_empty_inventory(client):
    assert client.get(FACTS).json() == {"facts": []}
    assert client.get(VALUES, {"fact": "customer"}).json()["values"] == []
    assert known_fact_names() == []
    assert seen_values("class").values == []


@pytest.mark.parametrize("path", [FACTS, VALUES + "?fact=customer"])
def test_anonymous_is_refused(path):
    assert Client().get(path).status_code in (401, 403)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from(["fact", "class", "agent", "identity", "", "x"]),
    fact=st.one_of(
        st.sampled_from(["customer", "os.name", "tags", "dc.rack"]), st.text(max_size=30)
    ),
    prefix=st.text(max_size=20),
    limit=st.text(alphabet="0123456789-x", max_size=4),
)
def test_any_query_is_answered_never_a_500(fleet, client, kind, fact, prefix, limit):
    response = client.get(VALUES, {"kind": kind, "fact": fact, "q": prefix, "limit": limit})
    assert response.status_code in (200, 400), (kind, fact, prefix, response.content[:200])
    if response.status_code == 200:
        assert all(v["value"].lower().startswith(prefix.lower()) for v in response.json()["values"])


def test_nul_characters_are_answered_not_a_server_error(fleet, client):
    """PostgreSQL cannot take NUL in a parameter: the API says so instead of failing."""
    assert client.get(VALUES, {"kind": "identity", "q": "web\x00"}).json()["values"] == []
    assert client.get(VALUES, {"fact": "customer", "q": "\x00"}).json()["values"] == []
    response = client.get("/api/inventory/preview/", {"filter": "customer='ac\x00me'"})
    assert response.status_code == 400
    assert response.json() == {"error": "NUL character at column 13; remove it", "column": 13}
