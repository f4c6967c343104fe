"""Who sees which nodes (portal/rbac/visibility.py) on the inventory pages and the inventory API.

An operator scoped to ``customer=acme`` sees the acme nodes only: on the list page, a node's
page, the preview, and in every fact name and value the filter builder offers. Runs on the
configured database (SQLite by default, PostgreSQL with ``DATABASE_URL``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from portal.inventory.models import Node
from portal.inventory.visibility import InventoryScope, inventory_scope, visible_nodes
from portal.rbac.services import GrantSpec, set_grant, sync_catalog, update_role_settings

pytestmark = pytest.mark.django_db

PREVIEW = "/api/inventory/preview/"
FACTS = "/api/inventory/facts/"
VALUES = "/api/inventory/values/"
CHOICES = "/api/inventory/fact-choices/"
NO_NODES = "Your roles give you no nodes to see; ask an admin."

# 5 acme nodes, 22 globex nodes (each with a fact and a class only globex has), 3 initech
# nodes of which one has the ``team`` fact; db nodes carry ``services``.
ACME = [f"acme{n:02d}.dc1.example" for n in range(5)]
GLOBEX = [f"globex{n:02d}.dc2.example" for n in range(22)]
INITECH = [f"initech{n:02d}.dc1.example" for n in range(3)]
EVERY_NODE = sorted(ACME + GLOBEX + INITECH)


def _facts(customer: str, identity: str, n: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "customer": customer,
        "role": "db" if n % 2 else "web",
        "services": ["sshd", f"{customer}-app"],
    }
    if customer == "globex":
        facts["globex_secret"] = f"s{n}"
    if identity == INITECH[0]:
        facts["team"] = "blue"
    return facts


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fleet(db: None) -> list[str]:
    now = timezone.now()
    Node.objects.bulk_create(
        Node(
            identity=identity,
            collectives=["mcollective"],
            facts=_facts(customer, identity, n),
            classes=["base", f"{customer}::app"],
            agents=["rpcutil"],
            first_seen=now,
            last_seen=now,
            registered_at=now,
        )
        for customer, group in (("acme", ACME), ("globex", GLOBEX), ("initech", INITECH))
        for n, identity in enumerate(group)
    )
    return EVERY_NODE


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """A user in the given roles; ``grants`` maps a role to its grants' scopes (one agent
    each: rpcutil, service, package, ...)."""
    sync_catalog()
    agents = ["rpcutil", "service", "package", "puppet", "filemgr"]

    def make(
        name: str, roles: tuple[str, ...] = (), grants: dict[str, list[str]] | None = None
    ) -> User:
        user = User.objects.create_user(name, password=f"pw-{name}-123")
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        for role, scopes in (grants or {}).items():
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            for agent, scope in zip(agents, scopes, strict=False):
                set_grant(GrantSpec(role, agent, None, scope), actor=None)
        return user

    return make


@pytest.fixture
def acme_operator(make_user: Callable[..., User]) -> User:
    """The demo's noc: role ``acme-noc`` granted rpcutil and service on customer=acme."""
    return make_user("acmeop", ("operator",), {"acme-noc": ["customer=acme", "customer = acme"]})


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(html: str) -> list[str]:
    return re.findall(r'<a href="/inventory/([^/"]+)/">', html)


def all_pages(client: Client, **params: str) -> list[str]:
    """Every identity the list page shows, following its Next links."""
    seen: list[str] = []
    url = "/inventory/?" + "&".join(f"{k}={v}" for k, v in params.items())
    while url:
        html = client.get(url).content.decode()
        seen += listed(html)
        next_link = re.search(r'<a href="(\?[^"]+)" rel="next">', html)
        url = "/inventory/" + next_link.group(1).replace("&amp;", "&") if next_link else ""
    return seen


# --- the decision ------------------------------------------------------------------------------


def test_a_scoped_operator_sees_the_nodes_of_their_scope(fleet, acme_operator):
    scope = inventory_scope(acme_operator)
    # Both grants' scopes are the same once canonical: one scope, shown in canonical form.
    assert scope == InventoryScope(everything=False, scopes=("customer==acme",))
    assert (scope.text, scope.scoped, scope.sees_nothing) == ("customer==acme", True, False)
    visible = visible_nodes(acme_operator, Node.objects.all())
    assert sorted(visible.values_list("identity", flat=True)) == ACME


def test_two_roles_see_the_union_of_their_scopes(fleet, make_user):
    user = make_user(
        "twohats",
        grants={"acme-noc": ["customer=acme"], "initech-noc": ["customer=initech and role=web"]},
    )
    scope = inventory_scope(user)
    assert scope.scopes == ("customer==acme", "customer==initech and role==web")
    assert scope.text == "(customer==acme) or (customer==initech and role==web)"
    visible = sorted(visible_nodes(user, Node.objects.all()).values_list("identity", flat=True))
    assert visible == sorted([*ACME, INITECH[0], INITECH[2]])


def test_every_grant_of_a_role_counts_whatever_its_agent(fleet, make_user):
    user = make_user("mixed", grants={"mixed": ["customer=acme", "customer=initech"]})
    visible = set(visible_nodes(user, Node.objects.all()).values_list("identity", flat=True))
    assert visible == set(ACME + INITECH)


def test_an_unscoped_grant_sees_every_node(fleet, make_user):
    user = make_user("wide", grants={"acme-noc": ["customer=acme"], "ops": [""]})
    assert inventory_scope(user) == InventoryScope(everything=True)
    assert visible_nodes(user, Node.objects.all()).count() == len(EVERY_NODE)


def test_a_role_that_sees_all_nodes_sees_every_node_without_any_grant(fleet, make_user):
    user = make_user("auditor", ("auditors",))
    assert inventory_scope(user).sees_nothing
    update_role_settings(
        "auditors",
        confirm_above=None,
        reason_required=False,
        may_approve=False,
        sees_all_nodes=True,
        actor=None,
    )
    assert inventory_scope(user).everything
    scoped = make_user("scoped-auditor", ("auditors",), {"acme-noc": ["customer=acme"]})
    assert inventory_scope(scoped).everything  # the right wins over the scopes


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_managers_and_admins_see_every_node(fleet, make_user, role):
    user = make_user(f"a-{role}", (role,))
    assert inventory_scope(user).everything
    assert visible_nodes(user, Node.objects.all()).count() == len(EVERY_NODE)


def test_a_superuser_sees_every_node(fleet):
    user = User.objects.create_superuser("root", password="pw-root-123")
    assert inventory_scope(user).everything


def test_no_grant_sees_no_node(fleet, make_user):
    user = make_user("newbie", ("operator",))
    scope = inventory_scope(user)
    assert scope == InventoryScope(everything=False)
    assert scope.sees_nothing and not scope.scoped and scope.text == ""
    assert visible_nodes(user, Node.objects.all()).count() == 0
    with pytest.raises(ValueError, match="sees no node"):
        _ = scope.filter


def test_anonymous_and_inactive_users_see_nothing(fleet, make_user):
    assert inventory_scope(AnonymousUser()).sees_nothing
    admin = make_user("gone", ("admin",))
    admin.is_active = False
    admin.save()
    assert inventory_scope(admin).sees_nothing
    assert visible_nodes(admin, Node.objects.all()).count() == 0


def test_a_scope_on_a_fact_some_nodes_lack(fleet, make_user):
    """Nodes without the fact a scope names are outside it, as the nodes' matcher says."""
    user = make_user("blue", grants={"blue-team": ["team=blue"]})
    visible = list(visible_nodes(user, Node.objects.all()).values_list("identity", flat=True))
    assert visible == [INITECH[0]]
    html = client_for(user).get("/inventory/").content.decode()
    assert listed(html) == [INITECH[0]]
    assert client_for(user).get(f"/inventory/{ACME[0]}/").status_code == 404
    assert client_for(user).get(FACTS).json()["facts"] == [
        {"name": "customer", "nodes": 1},
        {"name": "role", "nodes": 1},
        {"name": "services", "nodes": 1},
        {"name": "team", "nodes": 1},
    ]


# --- the pages ---------------------------------------------------------------------------------


def test_list_page_shows_a_scoped_operator_only_their_nodes_and_says_so(fleet, acme_operator):
    client = client_for(acme_operator)
    response = client.get("/inventory/")
    assert response.status_code == 200
    html = response.content.decode()
    assert listed(html) == ACME
    assert "Showing the 5 nodes inside your scope: <code>customer==acme</code>" in html
    assert not any(identity in html for identity in GLOBEX)

    html = client.get("/inventory/", {"q": "customer=globex"}).content.decode()
    assert listed(html) == []
    assert "Showing the 0 nodes inside your scope: <code>customer==acme</code>" in html
    html = client.get("/inventory/", {"q": "role=db"}).content.decode()
    assert listed(html) == [ACME[1], ACME[3]]
    assert "Showing the 2 nodes inside your scope" in html


def test_list_page_pages_through_the_scope_only(fleet, make_user):
    user = make_user("globexop", grants={"globex-noc": ["customer=globex or customer=other"]})
    now = timezone.now()
    Node.objects.bulk_create(
        Node(identity=f"zz-other{n:03d}", facts={"customer": "other"}, first_seen=now,
             last_seen=now, registered_at=now)
        for n in range(60)
    )  # fmt: skip
    others = [f"zz-other{n:03d}" for n in range(60)]
    assert all_pages(client_for(user)) == sorted(GLOBEX + others)  # two pages


def test_list_page_of_an_admin_has_no_scope_note(fleet, make_user):
    html = client_for(make_user("boss", ("admin",))).get("/inventory/").content.decode()
    assert listed(html) == EVERY_NODE
    assert 'id="inventory-scope"' not in html


def test_list_page_without_grants_says_ask_an_admin(fleet, make_user):
    html = client_for(make_user("newbie", ("operator",))).get("/inventory/").content.decode()
    assert listed(html) == []
    assert NO_NODES in html


def test_node_page_outside_the_scope_is_a_404_like_a_missing_node(fleet, acme_operator):
    client = client_for(acme_operator)
    assert client.get(f"/inventory/{ACME[0]}/").status_code == 200
    outside = client.get(f"/inventory/{GLOBEX[0]}/")
    missing = client.get("/inventory/nobody.example/")
    assert outside.status_code == missing.status_code == 404
    text = outside.content.decode()
    assert f"No node named <code>{GLOBEX[0]}</code> among the nodes you may see." in text
    assert "globex_secret" not in text
    # Nothing tells the two apart but the name asked for (and each page's CSRF token).
    assert _comparable(text, GLOBEX[0]) == _comparable(missing.content.decode(), "nobody.example")


def _comparable(html: str, identity: str) -> str:
    return re.sub(r'value="[A-Za-z0-9]{64}"', "TOKEN", html.replace(identity, "X"))


def test_node_page_for_a_user_without_grants_is_a_404(fleet, make_user):
    client = client_for(make_user("newbie", ("operator",)))
    assert client.get(f"/inventory/{ACME[0]}/").status_code == 404


def test_list_page_query_count_of_a_scoped_operator(
    fleet, acme_operator, django_assert_num_queries
):
    client = client_for(acme_operator)
    # session, user, grant scopes, standing (no unscoped grant), the navigation's standing,
    # the COUNT inside the scope, one SELECT of the page
    with django_assert_num_queries(7):
        response = client.get("/inventory/", {"q": "role=web"})
    assert listed(response.content.decode()) == [ACME[0], ACME[2], ACME[4]]


# --- the API -----------------------------------------------------------------------------------


def test_preview_counts_and_lists_only_the_scope(fleet, acme_operator):
    client = client_for(acme_operator)
    data = client.get(PREVIEW, {"filter": ""}).json()
    assert data["count"] == 5
    assert [node["identity"] for node in data["nodes"]] == ACME
    data = client.get(PREVIEW, {"filter": "customer=globex"}).json()
    assert data == {"count": 0, "nodes": [], "filter": "customer=globex"}
    data = client.get(PREVIEW, {"filter": "not customer=acme"}).json()
    assert data["count"] == 0
    # Text typed to reach outside the scope stays inside it (the filter is ANDed, parsed).
    data = client.get(PREVIEW, {"filter": "customer=acme or customer=globex"}).json()
    assert data["count"] == 5


def test_preview_for_admin_and_for_no_grants(fleet, make_user):
    assert client_for(make_user("boss", ("admin",))).get(PREVIEW).json()["count"] == 30
    data = client_for(make_user("newbie", ("operator",))).get(PREVIEW).json()
    assert (data["count"], data["nodes"]) == (0, [])


def test_fact_names_of_the_scope_only(fleet, acme_operator):
    facts = client_for(acme_operator).get(FACTS).json()["facts"]
    assert facts == [
        {"name": "customer", "nodes": 5},
        {"name": "role", "nodes": 5},
        {"name": "services", "nodes": 5},
    ]
    assert client_for(acme_operator).get(FACTS, {"q": "glo"}).json() == {"facts": []}


def test_values_of_the_scope_only(fleet, acme_operator):
    client = client_for(acme_operator)

    def offered(**params: str) -> list[tuple[str, int]]:
        response = client.get(VALUES, params)
        assert response.status_code == 200, response.content
        return [(v["value"], v["nodes"]) for v in response.json()["values"]]

    assert offered(fact="customer") == [("acme", 5)]
    assert offered(fact="customer", q="g") == []
    assert offered(fact="services") == [("acme-app", 5), ("sshd", 5)]
    assert offered(fact="globex_secret") == []
    assert offered(kind="class") == [("acme::app", 5), ("base", 5)]
    assert offered(kind="identity") == [(identity, 1) for identity in ACME]
    assert offered(kind="identity", q="glo") == []
    assert offered(kind="agent") == [("rpcutil", 5)]


def test_fact_choices_of_the_scope_only(fleet, acme_operator):
    response = client_for(acme_operator).get(CHOICES, {"fact": "services", "filter": ""})
    assert response.json() == {
        "fact": "services",
        "values": [{"value": "acme-app", "nodes": 5}, {"value": "sshd", "nodes": 5}],
        "nodes": 5,
        "truncated": False,
    }
    other = client_for(acme_operator).get(CHOICES, {"fact": "customer", "filter": "role=db"})
    assert other.json()["values"] == [{"value": "acme", "nodes": 2}]


def test_the_cache_of_everything_never_answers_a_scoped_operator(fleet, make_user, acme_operator):
    """Admins fill the shared cache first; the scoped answers are their own, and the other
    way round."""
    admin = client_for(make_user("boss", ("admin",)))
    scoped = client_for(acme_operator)
    assert {"name": "globex_secret", "nodes": 22} in admin.get(FACTS).json()["facts"]
    assert ("globex", 22) in [
        (v["value"], v["nodes"]) for v in admin.get(VALUES, {"fact": "customer"}).json()["values"]
    ]
    assert "globex_secret" not in [f["name"] for f in scoped.get(FACTS).json()["facts"]]
    customers = scoped.get(VALUES, {"fact": "customer"}).json()["values"]
    assert customers == [{"value": "acme", "nodes": 5}]
    cache.clear()
    assert scoped.get(VALUES, {"fact": "customer"}).json()["values"] == customers
    assert len(admin.get(VALUES, {"fact": "customer"}).json()["values"]) == 3


def test_the_api_gives_a_user_without_grants_nothing(fleet, make_user):
    client = client_for(make_user("newbie", ("operator",)))
    assert client.get(FACTS).json() == {"facts": []}
    values = client.get(VALUES, {"fact": "customer"}).json()
    assert (values["values"], values["complete"]) == ([], True)
    assert client.get(VALUES, {"kind": "nope"}).status_code == 400  # still checked
    choices = client.get(CHOICES, {"fact": "customer", "filter": ""}).json()
    assert (choices["values"], choices["nodes"]) == ([], 0)


@pytest.mark.parametrize("path", [PREVIEW, FACTS, VALUES + "?fact=customer", CHOICES + "?fact=a"])
def test_anonymous_is_refused(fleet, path):
    assert Client().get(path).status_code in (401, 403)
