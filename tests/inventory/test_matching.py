"""Node.objects.matching(f) selects exactly the nodes Filter.matches selects.

Runs on the configured database: SQLite by default, PostgreSQL with
``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/switchboard pytest tests/inventory``.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agents.filters import Filter, FilterSyntaxError, compile_safe
from agents.filters.terms import escape_slashes, make_fact_term, quote_value
from portal.inventory.models import Node
from portal.inventory.pg_regex import UnsupportedFilter, to_postgres

pytestmark = pytest.mark.django_db

NODES = {
    "web01.dc1.example": {
        "facts": {
            "customer": "acme",
            "environment": "prod",
            "cpus": 8,
            "memory": "16384",
            "load": 0.5,
            "virtual": True,
            "tags": ["blue", "green", 3],
            "os": {"name": "debian", "release": "12"},
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
            "memory": 4096,
            "load": "high",
            "virtual": False,
            "tags": [],
            "os": {"name": "ubuntu", "release": "24.04"},
            "dc": {"rack": "r9"},
        },
        "classes": ["base", "nginx", "role::web"],
        "agents": ["rpcutil"],
    },
    "db01.dc1.example": {
        "facts": {
            "customer": "globex",
            "environment": "prod",
            "cpus": " 4 ",
            "memory": "lots",
            "load": "1e-400",
            "big": "1e400",
            "tags": ["Blue"],
            "os": "rhel",
            "dc": {"rack": "r1"},
        },
        "classes": ["base", "mysql"],
        "agents": ["rpcutil", "package"],
    },
}


@pytest.fixture
def fleet() -> None:
    now = timezone.now()
    Node.objects.bulk_create(
        Node(identity=identity, first_seen=now, last_seen=now, registered_at=now, **fields)
        for identity, fields in NODES.items()
    )


def selected(wanted: Filter) -> set[str]:
    return set(Node.objects.matching(wanted).values_list("identity", flat=True))


def expected(wanted: Filter) -> set[str]:
    return {node.identity for node in Node.objects.all() if wanted.matches(node)}


@pytest.mark.parametrize(
    ("text", "identities"),
    [
        ("customer=acme", {"web01"}),
        ("customer=/acme/", {"web01", "web02"}),
        ("customer!=acme", {"web02", "db01"}),
        ("customer!=/^acme/", {"db01"}),
        ("cpus>=8", {"web01", "web02"}),  # 8, "16": numbers; " 4 " is 4
        ("cpus<5", {"db01"}),
        ("cpus=4", {"db01"}),
        ("memory>5000", {"web01", "db01"}),  # "lots" is compared as text, after "5000"
        ("memory>=lots", {"db01"}),
        ("load<1", {"web01", "db01"}),  # 1e-400 underflows to 0 on nodes too
        ("big>1", {"db01"}),  # 1e400 is not a finite number: as text, "1e400" > "1"
        ("big<1", set()),
        ("virtual=true", {"web01"}),
        ("virtual=false", {"web02"}),
        ("tags=blue", {"web01"}),
        ("tags=3", {"web01"}),
        ("tags!=blue", {"web02", "db01"}),  # an empty list has no element equal to blue
        ("tags=~/^B/", {"db01"}),
        ("os.name=debian", {"web01"}),
        ("os=rhel", {"db01"}),
        ("os=~/debian/", {"web01"}),  # an object compares as its Python repr
        ("os!=rhel", {"web01", "web02"}),
        ("os.name=rhel", set()),
        ("dc.rack=r1", {"web01", "db01"}),  # flat "dc.rack" first, then nested dc.rack
        ("dc.rack=r9", {"web02"}),
        ("nothing!=x", set()),  # null never matches
        ("missing!=x", set()),  # a missing fact never matches
        ("apache", {"web01"}),
        ("/^role::/", {"web01", "web02"}),
        ("not base", set()),
        ("agent:package or agent:service", {"web01", "db01"}),
        ("identity:web02.dc2.example", {"web02"}),
        ("identity:/dc1/", {"web01", "db01"}),
        ("(customer=/acme/ and environment=prod) or mysql", {"web01", "db01"}),
        ("not (cpus>4 or customer=globex)", set()),
        ("customer=/^acme$/ and not /ngin/", {"web01"}),
    ],
)
def test_known_cases(fleet, text, identities):
    wanted = Filter.parse(text)
    full = {i for i in NODES if i.split(".")[0] in identities}
    # Checked against the nodes' own matcher too, so these cases also pin the semantics down.
    assert expected(wanted) == full
    assert selected(wanted) == expected(wanted)


def test_structured_kinds_are_anded_and_identities_ored(fleet):
    wanted = Filter.from_dict(
        {
            "fact": [{"fact": "environment", "operator": "==", "value": "prod"}],
            "cf_class": ["base"],
            "agent": ["rpcutil"],
            "identity": ["web01.dc1.example", "/^db/", "web02.dc2.example"],
        }
    )
    assert selected(wanted) == expected(wanted) == {"web01.dc1.example", "db01.dc1.example"}


def test_empty_filter_selects_everything(fleet):
    assert selected(Filter()) == set(NODES)


def test_matching_is_a_queryset_counted_in_sql(fleet, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert Node.objects.matching(Filter.parse("base")).count() == 3


# -- generated: random fleets and random filters --------------------------------------------

ALPHABET = "ab1.- B\né"
# "x" holds an object (compared by its Python repr, keys in jsonb's order on PostgreSQL).
FACT_NAMES = ("a", "b", "n", "x", "x.y", "x.z")
scalars = st.one_of(
    st.text(ALPHABET, max_size=4),
    st.sampled_from(["5", " 5 ", "5.", ".5", "-2", "+3e1", "1e400", "1e-400", "true", "None"]),
    st.sampled_from(["٣", "1e16", "-0"]),  # a non-ASCII digit is a number to Python
    st.integers(-20, 20),
    st.integers(-40, 40).map(lambda i: i / 4),
    st.sampled_from([1e16, 2.5e20, -0.0, 1e-7]),  # jsonb prints these its own way
    st.booleans(),
    st.none(),
)
small_objects = st.dictionaries(st.sampled_from(["k", "kk", "é"]), scalars, max_size=2)
fact_values = st.one_of(
    scalars, small_objects, st.lists(st.one_of(scalars, small_objects), max_size=3)
)
facts = st.dictionaries(st.sampled_from(["a", "b", "n", "x.y"]), fact_values, max_size=4).flatmap(
    lambda flat: st.one_of(
        st.just(flat),
        st.dictionaries(st.sampled_from(["y", "z"]), fact_values, max_size=2).map(
            lambda x: {**flat, "x": x}
        ),
    )
)
nodes = st.lists(
    st.tuples(
        facts,
        st.lists(st.sampled_from(["base", "apache", "role::web", "b1"]), unique=True),
        st.lists(st.sampled_from(["rpcutil", "echo"]), unique=True),
    ),
    min_size=1,
    max_size=6,
)
REGEX_PIECES = [
    "a", "b", "1", ".", "^", "$", r"\d", "[ab]", "[^a]", "a*", "b+", "é?", r"\b", "(a|b)",
    r"\.", r"\x61", "a{,2}", r"\Z", "(?:1)", "[.]",
]  # fmt: skip
regexes = st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=3).map("".join)
compare_values = st.one_of(
    st.text(ALPHABET, max_size=3),
    st.sampled_from(["5", "0", "-2", "1.25", "true", "None", "1e400", "1e16", "٣", "{'k': 1}"]),
)


@st.composite
def fact_terms(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(FACT_NAMES))
    if draw(st.booleans()):
        op = draw(st.sampled_from(["==", "!="]))
        return f"{name}{op}/{escape_slashes(draw(regexes))}/"
    op = draw(st.sampled_from(["==", "!=", "<", ">", "<=", ">="]))
    return f"{name}{op}{quote_value(draw(compare_values))}"


name_terms = st.one_of(
    st.sampled_from(["base", "apache", "class:role::web", "agent:echo", "agent:rpcutil"]),
    regexes.map(lambda r: f"/{escape_slashes(r)}/"),
    st.sampled_from(["identity:n1", "identity:/[02]/"]),
)
compounds = st.recursive(
    st.one_of(fact_terms(), name_terms),
    lambda inner: st.one_of(
        inner.map(lambda e: f"not ({e})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]}) and ({p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]}) or ({p[1]})"),
    ),
    max_leaves=5,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fleet=nodes, texts=st.lists(compounds, min_size=1, max_size=4))
def test_database_agrees_with_the_nodes(fleet, texts):
    filters = []
    for text in texts:
        try:
            filters.append(Filter.parse(text))
        except FilterSyntaxError:
            continue
    assume(filters)
    Node.objects.all().delete()
    now = timezone.now()
    Node.objects.bulk_create(
        Node(
            identity=f"n{i}",
            facts=node_facts,
            classes=classes,
            agents=agents,
            first_seen=now,
            last_seen=now,
            registered_at=now,
        )
        for i, (node_facts, classes, agents) in enumerate(fleet)
    )
    for wanted in filters:
        assert selected(wanted) == expected(wanted), wanted.describe()


@given(
    facts_list=st.lists(
        st.tuples(st.sampled_from(FACT_NAMES), st.sampled_from(list(ALPHABET))), max_size=2
    ),
    identities=st.lists(st.sampled_from(["n0", "n1", "/1/", "/^n[02]$/"]), max_size=3),
)
@settings(max_examples=50, deadline=None)
def test_structured_filters_agree(facts_list, identities):
    wanted = Filter(
        fact=[make_fact_term(name, "==", value) for name, value in facts_list],
        identity=identities,
    )
    assert selected(wanted) == expected(wanted)


# -- the regex rewrite, checked by PostgreSQL itself -------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("a$", "xa\n", True),
        ("a$", "xa\nb", False),
        ("a.b", "a\nb", False),
        ("(?s)a.b", "a\nb", True),
        (r"\bab\b", "x ab y", True),
        (r"\bab\b", "xaby", False),
        (r"\x41", "A", True),
        ("[[:a]]", "a]", True),
        ("[[:a]]", "a", False),
        ("a{,2}b", "b", True),
        ("(?P<x>a)b", "ab", True),
        ("(?i)AB", "ab", True),
        ("(?m)^b$", "a\nb\nc", True),
        ("x{}", "x{}", True),
        (r"\Aab\Z", "ab", True),
        (r"\Aab\Z", "ab\n", False),
    ],
)
def test_postgres_regex_rewrite(pattern, text, found):
    compile_safe(pattern)
    assert bool(compile_safe(pattern).search(text)) is found
    if connection.vendor != "postgresql":
        pytest.skip("runs with DATABASE_URL pointing at PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s ~ %s", [text, to_postgres(pattern)])
        assert cursor.fetchone()[0] is found


@pytest.mark.parametrize("pattern", ["(?i:a)b", "a++", "(?>a)", r"\N{DIGIT ONE}"])
def test_regex_features_postgres_cannot_match_are_refused(pattern):
    with pytest.raises(UnsupportedFilter, match="inventory database"):
        to_postgres(pattern)
