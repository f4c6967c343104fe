"""The admin pages: the role x agent matrix, a grant's editor, role settings, operators' roles;
every change recorded with before and after."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from portal.audit.models import AuditEvent
from portal.rbac import policy
from portal.rbac.models import Grant, RoleSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db: None) -> Client:
    admin = User.objects.create_user("root", password="x")
    admin.groups.add(Group.objects.get(name="admin"))
    client = Client()
    client.force_login(admin)
    return client


def test_only_admins_open_the_pages(acme_operator: User) -> None:
    client = Client()
    client.force_login(acme_operator)
    for path in ("/access/", "/access/operators/", "/access/roles/acme-noc/grants/service/"):
        assert client.get(path).status_code == 403
    assert client.post("/access/roles/acme-noc/settings/", {}).status_code == 403


def test_the_matrix_shows_each_roles_grants(admin_client: Client, acme_operator: User) -> None:
    page = admin_client.get("/access/").content.decode()
    assert 'data-role="acme-noc"' in page
    assert "restart, status" in page and "customer=acme" in page


def test_a_grant_is_edited_scoped_and_revoked_with_audit(
    admin_client: Client, acme_operator: User
) -> None:
    url = "/access/roles/acme-noc/grants/service/"
    response = admin_client.post(
        url,
        {"actions": ["status"], "scope": "customer=acme and datacenter=a", "approval": "always"},
    )
    assert response.status_code == 302
    grant = Grant.objects.get(group__name="acme-noc", content_object__name="service")
    assert grant.scope == "customer=acme and datacenter=a" and grant.approval == "always"
    assert policy.runnable_actions(acme_operator)["service"] == {"status"}
    event = AuditEvent.objects.filter(kind="grant.changed").latest("pk")
    assert event.actor == "root"
    assert event.data["before"]["actions"] == ["restart", "status"]
    assert event.data["after"]["actions"] == ["status"]
    assert event.data["after"]["scope"] == "customer=acme and datacenter=a"

    bad = admin_client.post(url, {"actions": ["status"], "scope": "customer=acme and ("})
    assert bad.status_code == 400 and "scope" in bad.content.decode()
    assert admin_client.post(url, {"revoke": "1"}).status_code == 302
    assert not Grant.objects.filter(group__name="acme-noc", content_object__name="service").exists()
    assert "service" not in policy.runnable_actions(acme_operator)
    assert AuditEvent.objects.filter(kind="grant.changed").latest("pk").data["after"] is None


def test_roles_settings_and_membership_change_with_audit(
    admin_client: Client, acme_operator: User
) -> None:
    assert admin_client.post("/access/", {"name": "night-shift"}).status_code == 302
    assert admin_client.post("/access/", {"name": "night shift"}).status_code == 400
    admin_client.post(
        "/access/roles/night-shift/settings/",
        {"confirm_above": "10", "reason_required": "on", "may_approve": "on"},
    )
    changes = AuditEvent.objects.filter(kind="role.changed").order_by("pk")
    assert [e.data["after"].get("role") for e in changes] == ["night-shift", "night-shift"]
    assert changes.last().data["after"]["may_approve"] is True
    settings = RoleSettings.objects.get(role__name="night-shift")
    assert (settings.confirm_above, settings.reason_required, settings.may_approve) == (
        10,
        True,
        True,
    )
    admin_client.post(
        "/access/operators/", {"operator": acme_operator.pk, "roles": ["operator", "night-shift"]}
    )
    assert sorted(acme_operator.groups.values_list("name", flat=True)) == [
        "night-shift",
        "operator",
    ]
    event = AuditEvent.objects.filter(kind="operator.roles_changed").latest("pk")
    assert event.data["before"]["roles"] == ["acme-noc"]
    assert event.data["after"]["roles"] == ["night-shift", "operator"]
    # Taking acme-noc away took its grants with it, at once.
    assert policy.runnable_actions(acme_operator) == {}
