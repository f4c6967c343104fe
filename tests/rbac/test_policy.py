"""portal.rbac.policy: what a grant allows, how a scope narrows, and that nothing widens it."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Group, User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.filters import Filter, FilterSyntaxError
from agents.protocol import Registration
from portal.inventory.models import Node
from portal.rbac import policy
from portal.rbac.services import GrantSpec, revoke_grant, set_grant

pytestmark = pytest.mark.django_db


def test_a_new_operator_may_run_nothing(db: None) -> None:
    newcomer = User.objects.create_user("new", password="x")
    newcomer.groups.add(Group.objects.get(name="operator"))
    assert policy.runnable_actions(newcomer) == {}
    permit = policy.authorize(newcomer, "rpcutil", "ping", Filter())
    assert not permit.allowed
    assert permit.reason == "none of your roles may run rpcutil ping"


def test_admin_may_run_everything_unscoped(db: None) -> None:
    admin = User.objects.create_user("boss", password="x")
    admin.groups.add(Group.objects.get(name="admin"))
    permit = policy.authorize(admin, "service", "stop", Filter.parse("customer=globex"))
    assert permit.allowed and not permit.scopes
    assert "stop" in policy.runnable_actions(admin)["service"]


def test_grants_list_only_the_granted_actions(acme_operator: User) -> None:
    runnable = policy.runnable_actions(acme_operator)
    assert runnable["service"] == {"status", "restart"}
    assert "ping" in runnable["rpcutil"]
    assert "package" not in runnable
    assert not policy.authorize(acme_operator, "service", "stop", Filter()).allowed
    assert not policy.authorize(acme_operator, "package", "install", Filter()).allowed


def test_a_scope_narrows_the_targets(acme_operator: User, fleet: list[str]) -> None:
    permit = policy.authorize(acme_operator, "service", "status", Filter.parse("role=web"))
    assert permit.allowed
    assert permit.scope_text == "customer==acme"  # canonical form of the grant's scope
    matched = set(Node.objects.matching(permit.effective_filter).values_list("identity", flat=True))
    assert matched == {"acme-a-web", "acme-b-web"}


def test_scopes_of_two_roles_are_ored_and_an_unscoped_grant_lifts_them(
    acme_operator: User, fleet: list[str]
) -> None:
    globex = Group.objects.create(name="globex-noc")
    acme_operator.groups.add(globex)
    set_grant(
        GrantSpec("globex-noc", "rpcutil", None, "customer=globex and datacenter=a"), actor=None
    )
    permit = policy.authorize(acme_operator, "rpcutil", "ping", Filter())
    matched = set(Node.objects.matching(permit.effective_filter).values_list("identity", flat=True))
    assert matched == {
        "acme-a-web",
        "acme-a-db",
        "acme-b-web",
        "acme-b-db",
        "globex-a-web",
        "globex-a-db",
    }
    set_grant(GrantSpec("globex-noc", "rpcutil", None, ""), actor=None)
    assert not policy.authorize(acme_operator, "rpcutil", "ping", Filter()).scopes


def test_a_revoked_grant_allows_nothing(acme_operator: User) -> None:
    assert revoke_grant("acme-noc", "service", actor=None)
    assert not policy.authorize(acme_operator, "service", "status", Filter()).allowed
    assert "service" not in policy.runnable_actions(acme_operator)


# -- a crafted filter cannot widen a scope ------------------------------------------------------

TRICKS = [
    "customer=globex",
    "not customer=acme",
    "customer=acme or customer=globex",
    "customer=globex or not customer=globex",
    "(customer=globex) or (customer=acme)",
    "not (customer=acme and customer=globex)",
    "not not customer=globex",
    "identity:globex-a-web or identity:/./",
    "customer=~/./ or not customer=~/./",
    "/./ or not /./",
    "customer!=acme",
]


@pytest.mark.parametrize("typed", TRICKS)
def test_tricks_with_or_and_not_stay_inside_the_scope(
    acme_operator: User, fleet: list[str], typed: str
) -> None:
    permit = policy.authorize(acme_operator, "rpcutil", "ping", Filter.parse(typed))
    matched = Node.objects.matching(permit.effective_filter).values_list(
        "facts__customer", flat=True
    )
    assert set(matched) <= {"acme"}
    # The node-side matcher agrees (the filter the nodes get is the same object).
    for node in Node.objects.all():
        if permit.effective_filter.matches(node):
            assert node.facts["customer"] == "acme"


@pytest.mark.parametrize(
    "typed",
    ["customer=acme) or (customer=globex", "x=1 or", ")", "(", "customer=acme and (", "not"],
)
def test_unbalanced_text_is_refused_before_any_scope_applies(typed: str) -> None:
    with pytest.raises(FilterSyntaxError):
        Filter.parse(typed)


WORDS = st.sampled_from(
    ["customer=acme", "customer=globex", "role=web", "datacenter=b", "/db/", "identity:/g/"]
)
EXPRESSIONS = st.recursive(
    WORDS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" and ", " or "]), inner).map(
            lambda t: f"({''.join(t)})"
        ),
        inner.map(lambda e: f"not {e}"),
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed=EXPRESSIONS)
def test_no_expression_reaches_outside_the_scope(acme_operator: User, typed: str) -> None:
    nodes = [
        Registration(
            identity=f"{customer}-{role}",
            collectives=["mcollective"],
            facts={"customer": customer, "role": role},
            classes=[role],
            agents=["rpcutil"],
            msgtime=time.time(),
        )
        for customer in ("acme", "globex")
        for role in ("web", "db")
    ]
    from portal.inventory.services import record_registrations

    record_registrations(nodes)
    permit = policy.authorize(acme_operator, "rpcutil", "ping", Filter.parse(typed))
    for node in Node.objects.all():
        expected = Filter.parse(typed).matches(node) and node.facts["customer"] == "acme"
        assert permit.effective_filter.matches(node) == expected
