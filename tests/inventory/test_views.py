"""The inventory pages and the filter preview API (portal/inventory/views.py, api.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.accounts.services import issue_token
from portal.inventory.models import Node
from portal.jobs.models import Job, NodeReply

PREVIEW = "/api/inventory/preview/"

pytestmark = [pytest.mark.django_db]


def make_node(identity: str, stale: bool = False, **facts: Any) -> Node:
    now = timezone.now()
    seen = now - timedelta(hours=2) if stale else now
    return Node.objects.create(
        identity=identity,
        collectives=["mcollective"],
        facts=facts,
        classes=["base", f"role::{facts.get('role', 'none')}"],
        agents=["rpcutil", "service"],
        first_seen=now - timedelta(days=3),
        last_seen=seen,
        registered_at=seen,
    )


@pytest.fixture
def fleet(db: None) -> list[Node]:
    """12 acme nodes (every 4th stale), 8 globex; datacenters dc1/dc2."""
    nodes = []
    for n in range(20):
        customer = "acme" if n < 12 else "globex"
        nodes.append(
            make_node(
                f"node{n:03d}.dc{n % 2 + 1}.example",
                stale=n % 4 == 0,
                customer=customer,
                role="web" if n % 3 else "db",
                datacenter=f"dc{n % 2 + 1}",
                os="debian",
                processorcount=n % 8 + 1,
                environment="prod",
            )
        )
    return nodes


@pytest.fixture
def client_for(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


# --- the preview API ---------------------------------------------------------------------------


def test_preview_requires_login(fleet: list[Node]) -> None:
    response = Client().get(PREVIEW, {"filter": "customer=acme"})
    assert response.status_code in (401, 403)


def test_preview_accepts_a_token(fleet: list[Node], operator: User) -> None:
    token = issue_token(operator.username)
    response = Client().get(
        PREVIEW, {"filter": "customer=acme"}, HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 200
    assert response.json()["count"] == 12


def test_preview_counts_and_shows_named_and_key_facts(
    client_for: Client, fleet: list[Node]
) -> None:
    response = client_for.get(PREVIEW, {"filter": "customer=acme and processorcount>=4"})
    assert response.status_code == 200
    data = response.json()
    expected = sorted(
        n.identity
        for n in fleet
        if n.facts["customer"] == "acme" and n.facts["processorcount"] >= 4
    )
    assert data["count"] == len(expected)
    assert data["filter"] == "customer=acme and processorcount>=4"
    assert [n["identity"] for n in data["nodes"]] == expected[:20]
    first = data["nodes"][0]
    # the named facts first, then datacenter/customer/role; nothing else (no os, environment)
    assert list(first["facts"]) == ["customer", "processorcount", "datacenter", "role"]
    stale = {n.identity for n in fleet if n.is_stale}
    assert all(node["stale"] == (node["identity"] in stale) for node in data["nodes"])


def test_preview_empty_filter_is_every_node_and_limited(
    client_for: Client, fleet: list[Node]
) -> None:
    data = client_for.get(PREVIEW).json()
    assert data["count"] == 20
    assert len(data["nodes"]) == 20
    data = client_for.get(PREVIEW, {"filter": "   "}).json()
    assert data["count"] == 20


def test_preview_matching_nothing(client_for: Client, fleet: list[Node]) -> None:
    response = client_for.get(PREVIEW, {"filter": "customer=initech"})
    assert response.status_code == 200
    assert response.json() == {"count": 0, "nodes": [], "filter": "customer=initech"}


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("customer=acme and", 18),
        ("(customer=acme", 15),
        ("customer >== 3", 10),
        ("customer=acme\x00", 14),
    ],
)
def test_preview_bad_filter_is_400_with_column(
    client_for: Client, fleet: list[Node], text: str, column: int
) -> None:
    response = client_for.get(PREVIEW, {"filter": text})
    assert response.status_code == 400
    data = response.json()
    assert set(data) == {"error", "column"}
    assert data["column"] == column
    assert data["error"]


def test_preview_overlong_filter_is_400(client_for: Client, fleet: list[Node]) -> None:
    for text in ("customer=acme or " * 300, "x" * 4097, "a" * 100_000):
        response = client_for.get(PREVIEW, {"filter": text})
        assert response.status_code == 400, text[:40]
        assert "4096" in response.json()["error"]


def _bad_filters() -> list[str]:
    """A few hundred strings no filter parser should accept."""
    base = ["customer=acme", "role=web", "/apache/", "processorcount>=4", "agent:rpcutil"]
    bad: list[str] = []
    for term in base:
        bad += [
            f"({term}",
            f"{term})",
            f"(({term})",
            f"{term} and",
            f"and {term}",
            f"{term} or or {term}",
            "not",
            f"{term} not",
            f"({term} and ({term})",
            f"{term} and ()",
            f"{term} =",
        ]
    for op in ("==>", ">==", "=<>", "!!=", "=~~", "<<", "=!"):
        bad += [f"customer{op}acme", f"processorcount {op} 4"]
    bad += ["=acme", "==", "customer=", "()", ")(", "(((((", ")))))", "and", "or", "not not"]
    bad += [
        "customer=~/(a+)+$/",
        "customer=~/(a*)*b/",
        "/[/",
        "/(/",
        "customer=~/" + "a" * 5000 + "/",
    ]
    bad += ["/(x+x+)+y/", "customer=~/(.*a){20}/", "identity:/(/", "agent:", "identity:"]
    bad += [
        f"customer=acme{c}" for c in ("\x00", "\x01", "\x7f", "\u200b", "\ufeff", "é", "💥", "\\")
    ]
    bad += [f"{c}" * n for c in "()=<>!~&|" for n in (1, 3)]
    bad += ["(" * 500 + "a=b", "a=b" + ")" * 500, "(" * 3000 + "a=b" + ")" * 3000]
    bad += ["a=b " + "and " * 300, "x" * 4097, "customer=acme and " * 400, "é" * 5000]
    bad += [f"customer=acme and {ch}" for ch in "=<>!~)&|,;{}[]"]
    for term in base:
        bad += [f"{term} and role{op}web" for op in ("==>", ">==", "=<>", "!!=", "=~~", "<<", "=!")]
        bad += [f"{ch}{term}" for ch in "=<>~)&|,;{}[]"]
        bad += [f"{term} {word}" for word in ("and", "or", "not", "and not", "or (", "and )")]
    return bad


BAD_FILTERS = _bad_filters()


def test_bad_filter_sweep_is_always_a_clean_400(client_for: Client, fleet: list[Node]) -> None:
    assert len(BAD_FILTERS) > 150
    for text in BAD_FILTERS:
        response = client_for.get(PREVIEW, {"filter": text})
        assert response.status_code == 400, (text[:60], response.content[:200])
        data = response.json()
        assert isinstance(data["error"], str) and data["error"]
        assert data["column"] is None or (isinstance(data["column"], int) and data["column"] >= 1)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="()=<>!~/ andortcusmer:0123456789.*+?[]", max_size=60),
    )
)
def test_any_text_is_200_or_400_never_500(client_for: Client, fleet: list[Node], text: str) -> None:
    response = client_for.get(PREVIEW, {"filter": text})
    assert response.status_code in (200, 400), (text, response.content[:200])
    data = response.json()
    if response.status_code == 400:
        assert set(data) == {"error", "column"}
    else:
        assert data["count"] >= 0


# --- the node list -----------------------------------------------------------------------------


def _identities(html: str) -> list[str]:
    return re.findall(r'href="/inventory/([^/"]+)/"', html)


def test_list_requires_login(fleet: list[Node]) -> None:
    response = Client().get("/inventory/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_list_search_columns_and_stale_marks(client_for: Client, fleet: list[Node]) -> None:
    response = client_for.get(
        "/inventory/", {"q": "customer=globex", "columns": "os,role,customer"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    expected = sorted(n.identity for n in fleet if n.facts["customer"] == "globex")
    assert _identities(html) == expected
    head = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    assert re.findall(r'<th scope="col">([^<]+)</th>', head) == ["os", "role", "customer"]
    stale_rows = re.findall(r'<tr class="stale">\s*<td><a href="/inventory/([^/"]+)/"', html)
    assert stale_rows == [n.identity for n in fleet if n.is_stale and n.identity in expected]
    assert stale_rows  # node012 and node016 are globex and stale


def test_list_default_columns_and_bad_column_names(client_for: Client, fleet: list[Node]) -> None:
    html = client_for.get("/inventory/").content.decode()
    assert re.findall(r'<th scope="col">([^<]+)</th>', html) == ["customer", "role", "datacenter"]
    html = client_for.get("/inventory/", {"columns": "os,<script>,os, role"}).content.decode()
    assert re.findall(r'<th scope="col">([^<]+)</th>', html) == ["os", "role"]
    assert "<script>" not in html.split("<main>")[1]


def test_list_bad_filter_shows_the_error_with_a_caret(
    client_for: Client, fleet: list[Node]
) -> None:
    response = client_for.get("/inventory/", {"q": "customer=acme and"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "expected a filter term" in html
    assert "--column: 18" in html


def test_list_keyset_paging(client_for: Client, db: None) -> None:
    for n in range(120):
        make_node(f"host{n:04d}", customer="acme" if n % 2 else "globex")
    seen: list[str] = []
    url = "/inventory/?q=customer%3Dacme"
    pages = 0
    while url:
        html = client_for.get(url).content.decode()
        page = _identities(html)
        assert len(page) <= 50
        seen += page
        pages += 1
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = "/inventory/" + found.group(1).replace("&amp;", "&") if found else ""
    assert pages == 2
    assert seen == [f"host{n:04d}" for n in range(120) if n % 2]
    # Previous from the second page gives the first page back.
    html = client_for.get("/inventory/", {"q": "customer=acme", "after": seen[49]}).content.decode()
    assert _identities(html) == seen[50:]
    prev = re.search(r'href="([^"]+)" rel="prev"', html).group(1).replace("&amp;", "&")
    html = client_for.get("/inventory/" + prev).content.decode()
    assert _identities(html) == seen[:50]
    assert 'rel="prev"' not in html  # nothing before the first page
    assert 'rel="next"' in html


def test_list_query_count_is_constant(
    client_for: Client, db: None, django_assert_max_num_queries: Any
) -> None:
    for n in range(200):
        make_node(f"host{n:04d}", stale=n % 3 == 0, customer="acme", role="web")
    # session, user, the grant scopes of the user's roles (which nodes they may see:
    # portal.inventory.visibility; one unscoped grant, so every node), the user's roles for the
    # navigation, one SELECT of 51 nodes: no COUNT, no per-row query
    with django_assert_max_num_queries(5):
        response = client_for.get("/inventory/", {"q": "customer=acme", "after": "host0100"})
    assert response.status_code == 200
    assert len(_identities(response.content.decode())) == 50


# --- the node page -----------------------------------------------------------------------------


def _job(user: User, n: int) -> Job:
    return Job.objects.create(
        created_by=user,
        source=Job.Source.WEB,
        agent="service",
        action=f"status{n}",
        collective="mcollective",
        timeout=10,
        status=Job.Status.COMPLETED,
    )


def test_node_page(
    client_for: Client,
    fleet: list[Node],
    operator: User,
    other_operator: User,
) -> None:
    node = fleet[0]
    mine = []
    for n in range(55):
        job = _job(operator, n)
        NodeReply.objects.create(
            job=job,
            identity=node.identity,
            statuscode=0 if n % 5 else 1,
            statusmsg="OK" if n % 5 else "boom",
            received_at=timezone.now(),
        )
        mine.append(job.pk)
    theirs = _job(other_operator, 999)
    NodeReply.objects.create(
        job=theirs, identity=node.identity, statuscode=0, received_at=timezone.now()
    )
    elsewhere = _job(operator, 998)  # touched another node only
    NodeReply.objects.create(
        job=elsewhere, identity=fleet[1].identity, statuscode=0, received_at=timezone.now()
    )

    response = client_for.get(f"/inventory/{node.identity}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert node.identity in html
    assert 'id="stale-badge"' in html  # node000 is stale
    facts_table = re.search(r'<table class="grid" id="facts">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r"<th scope=\"row\"><code>([^<]+)</code>", facts_table) == sorted(node.facts)
    for word in ("role::db", "rpcutil", "service", "mcollective"):
        assert word in html
    linked = [int(n) for n in re.findall(r'href="/jobs/(\d+)/"', html)]
    assert linked == sorted(mine, reverse=True)[:50]
    assert theirs.pk not in linked and elsewhere.pk not in linked


def test_node_page_fresh_and_unknown(client_for: Client, fleet: list[Node]) -> None:
    html = client_for.get(f"/inventory/{fleet[1].identity}/").content.decode()
    assert 'id="stale-badge"' not in html
    assert "No job of yours has touched this node." in html
    assert client_for.get("/inventory/nope.example/").status_code == 404
    assert Client().get(f"/inventory/{fleet[1].identity}/").status_code == 302
