"""Logins, logouts and failed logins are recorded through the real login and logout views."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from portal.audit.models import AuditEvent
from portal.audit.services import verify_chain

pytestmark = pytest.mark.django_db


def test_a_login_is_recorded_with_the_address_and_roles(operator) -> None:
    response = Client(REMOTE_ADDR="198.51.100.4").post(
        "/login/", {"username": "noc", "password": "pw-noc-123"}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get()
    assert (event.kind, event.actor, event.actor_user, event.outcome) == (
        "login",
        "noc",
        operator,
        "ok",
    )
    assert event.source_ip == "198.51.100.4"
    assert event.roles == ["operator"]


def test_a_failed_login_records_the_name_tried_and_never_the_password(operator) -> None:
    response = Client().post("/login/", {"username": "noc", "password": "wrong-secret-42"})
    assert response.status_code == 200  # the form again, with its error
    event = AuditEvent.objects.get()
    assert (event.kind, event.actor, event.actor_user, event.outcome) == (
        "login.failed",
        "noc",
        None,
        "failed",
    )
    assert event.source_ip == "127.0.0.1"
    assert event.data == {"username": "noc"}
    stored = json.dumps([event.summary, event.data, event.roles])
    assert "wrong-secret-42" not in stored and "*****" not in stored


def test_a_failed_login_as_nobody_is_recorded_too() -> None:
    Client().post("/login/", {"username": "ghost'; drop table", "password": "x"})
    event = AuditEvent.objects.get()
    assert event.kind == "login.failed"
    assert event.actor == "ghost'; drop table"
    assert event.summary == 'failed login as "ghost\'; drop table"'


def test_a_logout_is_recorded(operator) -> None:
    client = Client()
    client.post("/login/", {"username": "noc", "password": "pw-noc-123"})
    response = client.post("/logout/")
    assert response.status_code == 302
    kinds = list(AuditEvent.objects.order_by("id").values_list("kind", "actor"))
    assert kinds == [("login", "noc"), ("logout", "noc")]
    assert verify_chain() is None


def test_a_logout_without_a_session_records_nothing() -> None:
    Client().post("/logout/")
    assert not AuditEvent.objects.exists()


def test_the_navigation_shows_the_audit_link_to_those_who_may_read_it(operator, manager) -> None:
    for user, password, shown in [(operator, "pw-noc-123", False), (manager, "pw-mgr-123", True)]:
        client = Client()
        client.post("/login/", {"username": user.get_username(), "password": password})
        assert ('href="/audit/">Audit</a>' in client.get("/inventory/").content.decode()) is shown
