"""Saved filters: who sees which, what may be saved, who may delete (portal/targeting)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User

from portal.targeting.models import SavedFilter
from portal.targeting.services import (
    SavedFilterError,
    SavedFilterForbidden,
    check_expression,
    delete_filter,
    save_filter,
    shareable_roles,
)

pytestmark = pytest.mark.django_db


def names(user) -> list[str]:
    return list(SavedFilter.objects.visible_to(user).values_list("name", flat=True))


def test_private_filters_are_their_owners_alone(alice, bob):
    save_filter(alice, "acme web", "customer=acme and /web/")
    assert names(alice) == ["acme web"]
    assert names(bob) == []
    assert names(AnonymousUser()) == []


def test_shared_filters_reach_the_roles_members_only(alice, bob, carol):
    save_filter(alice, "dbs", "role=db", shared_with="dba")
    save_filter(alice, "prod", "environment=prod", shared_with="operator")
    assert names(alice) == ["dbs", "prod"]
    assert names(bob) == ["prod"]  # in operator, not in dba
    assert names(carol) == []
    saved = SavedFilter.objects.get(name="prod")
    assert saved.shared_with == Group.objects.get(name="operator")
    assert saved.owner == alice


def test_visible_filters_include_own_and_shared_without_duplicates(alice, bob):
    save_filter(alice, "mine", "customer=acme", shared_with="operator")
    save_filter(bob, "bobs", "customer=globex", shared_with="operator")
    save_filter(bob, "bobs private", "customer=initech")
    assert names(alice) == ["bobs", "mine"]
    assert names(bob) == ["bobs", "bobs private", "mine"]


def test_the_expression_is_stripped_and_kept_as_written(alice):
    saved = save_filter(alice, "  spaced  ", "  customer=acme   and not environment=dev ")
    assert saved.name == "spaced"
    assert saved.expression == "customer=acme   and not environment=dev"


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("customer=acme and", "expected a filter term at column 18, found end of filter", 18),
        ("customer=>acme", "unknown operator '=>' at column 9; expected one of", 9),
        ("(a or b", "expected ')' at column 8 to close '(' at column 1", 8),
        ("os=~/(a+)+$/", "", None),
        ("", "is empty", None),
        ("   ", "is empty", None),
        ("x" * 5000, "over the 4096 limit", None),
        (42, "must be a string", None),
        (None, "must be a string", None),
        ("customer='ac\x00me'", "has a NUL character at column 13; remove it", 13),
    ],
)
def test_a_bad_expression_is_refused_with_the_parsers_message(alice, expression, message, column):
    with pytest.raises(SavedFilterError) as caught:
        save_filter(alice, "bad", expression)
    assert message in caught.value.errors["expression"]
    if column is not None:
        assert caught.value.column == column
    assert not SavedFilter.objects.exists()


def test_check_expression_accepts_what_the_preview_accepts():
    assert check_expression(" customer=acme ") == "customer=acme"
    assert check_expression("(customer=acme or customer=globex) and not /db/") == (
        "(customer=acme or customer=globex) and not /db/"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is required"),
        ("   ", "is required"),
        (None, "is required"),
        ("x" * 101, "is longer than 100 characters"),
        ("a\x00b", "has a NUL character; remove it"),
    ],
)
def test_a_name_is_required(alice, name, message):
    with pytest.raises(SavedFilterError) as caught:
        save_filter(alice, name, "customer=acme")
    assert caught.value.errors == {"name": message}


def test_names_are_unique_per_owner_in_any_case(alice, bob):
    save_filter(alice, "Web", "/web/")
    with pytest.raises(SavedFilterError) as caught:
        save_filter(alice, "web", "/web/ and customer=acme")
    assert caught.value.errors == {"name": "you already have a filter named 'web'"}
    save_filter(bob, "web", "/web/")  # another owner may use the name
    assert SavedFilter.objects.count() == 2


def test_every_bad_field_is_named_at_once(alice):
    with pytest.raises(SavedFilterError) as caught:
        save_filter(alice, "", "customer=", shared_with="nope")
    assert set(caught.value.errors) == {"name", "expression", "shared_with"}


def test_a_filter_can_be_shared_only_with_a_role_of_ones_own(alice, bob, carol, root):
    with pytest.raises(SavedFilterError) as caught:
        save_filter(bob, "dbs", "role=db", shared_with="dba")
    assert caught.value.errors == {
        "shared_with": "you can share only with a role you have (operator), not 'dba'"
    }
    with pytest.raises(SavedFilterError) as caught:
        save_filter(carol, "x", "role=db", shared_with="operator")
    assert "(none)" in caught.value.errors["shared_with"]
    # A superuser may share with any role.
    save_filter(root, "for dbas", "role=db", shared_with="dba")
    assert names(alice) == ["for dbas"]


def test_shareable_roles(alice, bob, carol, root):
    assert [g.name for g in shareable_roles(alice)] == ["dba", "operator"]
    assert [g.name for g in shareable_roles(bob)] == ["operator"]
    assert shareable_roles(carol) == []
    everyone = sorted(Group.objects.values_list("name", flat=True))
    assert [g.name for g in shareable_roles(root)] == everyone


def test_a_member_of_the_admin_role_shares_as_a_superuser_does(alice: User) -> None:
    # One definition of an admin (rbac.policy): the admin role counts as a superuser does.
    admin = User.objects.create_user("ada", password="pw-ada-123")
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    everyone = sorted(Group.objects.values_list("name", flat=True))
    assert [g.name for g in shareable_roles(admin)] == everyone
    save_filter(admin, "for dbas", "role=db", shared_with="dba")
    assert names(alice) == ["for dbas"]


def test_only_the_owner_deletes(alice, bob):
    saved = save_filter(alice, "prod", "environment=prod", shared_with="operator")
    with pytest.raises(SavedFilterForbidden) as caught:
        delete_filter(bob, saved)
    assert caught.value.errors == {"owner": "only its owner, alice, can delete this filter"}
    assert SavedFilter.objects.count() == 1
    delete_filter(alice, saved)
    assert not SavedFilter.objects.exists()


def test_a_deleted_role_makes_its_filters_private(alice, bob):
    save_filter(alice, "dbs", "role=db", shared_with="operator")
    Group.objects.get(name="operator").delete()
    assert names(bob) == []
    assert names(alice) == ["dbs"]
