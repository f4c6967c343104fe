"""Enrolment through the page, the API and ``manage.py nodes``: admins decide, others may not."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from agents.protocol import Registration
from agents.protocol.security import SigningKey
from portal.accounts.services import issue_token
from portal.audit.models import AuditEvent
from portal.inventory import services
from portal.inventory.models import Enrolment, Node
from portal.inventory.services import SealedRegistration, admit_registrations

pytestmark = pytest.mark.django_db


def offer(identity: str, key: SigningKey | None = None, **facts: str) -> SigningKey:
    """``identity`` registers for the first time (pending); returns its key."""
    key = key or SigningKey.generate()
    registration = Registration(
        identity=identity,
        collectives=["mcollective"],
        facts=dict(facts) or {"customer": "acme"},
        classes=["base"],
        agents=["rpcutil"],
        msgtime=time.time(),
        public_key=key.public_pem(),
    )
    admit_registrations([SealedRegistration(registration, key.key_id)])
    return key


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_lists_pending_nodes_and_accepts_with_a_message(admin_user) -> None:
    key = offer("web01.dc1.example", customer="acme")
    client = logged_in(admin_user)

    page = client.get("/enrolment/").content.decode()
    assert 'data-identity="web01.dc1.example"' in page
    assert key.key_id in page and "customer=acme" in page
    assert "Auto-accept is <strong>off</strong>" in page

    response = client.post(
        "/enrolment/web01.dc1.example/accept/", {"next": "/enrolment/"}, follow=True
    )
    assert response.redirect_chain == [("/enrolment/", 302)]
    text = response.content.decode()
    assert f"web01.dc1.example accepted: its key {key.key_id} is pinned." in text
    assert "No node is waiting." in text
    assert Node.objects.filter(identity="web01.dc1.example").exists()
    assert AuditEvent.objects.get(kind="node.accepted").actor == "admin"


def test_a_refused_decision_says_why_on_the_page(admin_user) -> None:
    offer("web01")
    response = logged_in(admin_user).post("/enrolment/web01/revoke/", follow=True)
    assert "cannot revoke web01: it is pending" in response.content.decode()
    assert Enrolment.objects.get().state == "pending"


def test_a_conflict_shows_on_the_node_page_and_can_be_rekeyed(admin_user) -> None:
    key, other = offer("web01"), SigningKey.generate()
    services.accept_node("web01", admin_user)
    offer("web01", other)  # the same name, another key
    client = logged_in(admin_user)

    page = client.get("/inventory/web01/").content.decode()
    assert 'id="key-conflict"' in page and other.key_id in page and key.key_id in page
    assert 'data-decision="rekey"' in page
    listing = client.get("/enrolment/").content.decode()
    assert 'id="conflicts"' in listing and other.key_id in listing

    response = client.post("/enrolment/web01/rekey/", {"next": "/inventory/web01/"}, follow=True)
    assert f"web01 re-keyed: key {other.key_id} is trusted now." in response.content.decode()
    assert Enrolment.objects.get().key_id == other.key_id


def test_operators_and_managers_may_not_see_or_decide(operator) -> None:
    offer("web01")
    client = logged_in(operator)
    assert client.get("/enrolment/").status_code == 403
    assert client.post("/enrolment/web01/accept/").status_code == 403
    assert client.get("/api/enrolment/").status_code == 403
    assert client.post("/api/enrolment/web01/accept/").status_code == 403
    assert 'href="/enrolment/"' not in client.get("/inventory/").content.decode()
    assert Enrolment.objects.get().state == "pending"


def test_the_api_lists_and_decides_with_a_token(admin_user) -> None:
    key = offer("web01")
    offer("web02")
    token = issue_token(admin_user.username)
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")

    listing = api.get("/api/enrolment/?state=pending").json()
    assert [e["identity"] for e in listing["results"]] == ["web01", "web02"]
    assert listing["results"][0]["key_id"] == key.key_id
    assert listing["next_after"] is None

    accepted = api.post("/api/enrolment/web01/accept/")
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    rejected = api.post("/api/enrolment/web02/reject/").json()
    assert rejected["state"] == "rejected"
    again = api.post("/api/enrolment/web02/revoke/")
    assert again.status_code == 409
    assert again.json() == {"error": "cannot revoke web02: it is rejected"}
    assert api.get("/api/enrolment/?state=bogus").status_code == 400
    assert api.post("/api/enrolment/web01/bless/").status_code == 404
    forgotten = api.post("/api/enrolment/web02/forget/").json()
    assert forgotten == {"identity": "web02", "state": "forgotten"}
    assert [
        e.actor
        for e in AuditEvent.objects.filter(kind__startswith="node.").exclude(kind="node.pending")
    ] == ["admin", "admin", "admin"]


def test_the_command_lists_and_decides_as_an_admin(admin_user, operator) -> None:
    offer("web01")
    offer("web02")
    out = StringIO()
    call_command("nodes", "pending", stdout=out)
    assert out.getvalue().splitlines()[-1] == "2 node(s)"

    out = StringIO()
    call_command("nodes", "accept", "web01", "web02", "--user", "admin", stdout=out)
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["web01", "web02"]
    assert set(Node.objects.values_list("identity", flat=True)) == {"web01", "web02"}

    with pytest.raises(CommandError, match="noc is not an admin"):
        call_command("nodes", "revoke", "web01", "--user", "noc")
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 2 failed"):
        call_command("nodes", "revoke", "web01", "ghost", "--user", "admin", stderr=err)
    assert "ghost: no node 'ghost' has registered" in err.getvalue()
    assert Enrolment.objects.get(identity="web01").state == "revoked"
    assert AuditEvent.objects.filter(kind="node.revoked", actor="admin").count() == 1
