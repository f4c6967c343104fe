"""API tokens: hashed at rest, named, expiring, revocable; refused with a reason; the use noted
at most once a minute; the old DRF tokens carried over hashed; ``manage.py issue_token``."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from importlib import import_module
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token as DrfToken

from portal.accounts.models import ApiToken
from portal.accounts.services import issue_token
from portal.accounts.tokens import (
    LAST_USED_EVERY,
    authenticate_key,
    create_token,
    hash_key,
    revoke_token,
)
from portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

API = "/api/jobs/"
EXPORT = "/audit/export.csv"


def call(secret: str, path: str = API):
    return Client(HTTP_AUTHORIZATION=f"Token {secret}").get(path)


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(operator: User) -> None:
    issued = create_token(operator, "nightly", 30, actor=operator)
    assert issued.secret.startswith("sbt_") and len(issued.secret) == 44
    row = ApiToken.objects.get()
    assert row.key_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert row.prefix == issued.secret[:12] and row.name == "nightly"
    assert row.expires is not None
    assert abs(row.expires - (row.created + timedelta(days=30))) < timedelta(seconds=1)
    # Nowhere in the database: every text column of every table is searched.
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            columns = [
                c.name for c in connection.introspection.get_table_description(cursor, table)
            ]
            for column in columns:
                cursor.execute(  # names from the schema itself, the value a parameter
                    f'SELECT COUNT(*) FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE %s',  # noqa: S608
                    [f"%{issued.secret}%"],
                )
                assert cursor.fetchone()[0] == 0, f"the secret is in {table}.{column}"
    assert call(issued.secret).status_code == 200


def test_an_expired_token_is_refused_saying_so(operator: User) -> None:
    issued = create_token(operator, "old", 30, actor=operator)
    ApiToken.objects.update(expires=timezone.now() - timedelta(minutes=1))
    response = call(issued.secret)
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "expired on" in detail and issued.secret[:12] in detail
    assert response["WWW-Authenticate"] == "Token"
    # The audit export says the same, as text.
    exported = call(issued.secret, EXPORT)
    assert exported.status_code == 401 and "expired on" in exported.content.decode()


def test_a_revoked_token_and_a_deactivated_owners_token_are_refused(operator: User) -> None:
    revoked = create_token(operator, "a", 30, actor=operator)
    kept = create_token(operator, "b", 30, actor=operator)
    assert revoke_token(revoked.token, actor=operator) is True
    assert revoke_token(revoked.token, actor=operator) is False  # once
    response = call(revoked.secret)
    assert response.status_code == 401 and "was revoked" in response.json()["detail"]
    assert call(kept.secret).status_code == 200
    User.objects.filter(pk=operator.pk).update(is_active=False)
    response = call(kept.secret)
    assert response.status_code == 401 and "deactivated" in response.json()["detail"]
    unknown = call("sbt_" + "x" * 40)
    assert unknown.status_code == 401 and unknown.json()["detail"] == "Invalid token."


def test_last_used_is_written_at_most_once_a_minute(
    operator: User, django_assert_num_queries
) -> None:
    issued = create_token(operator, "busy", 30, actor=operator)
    assert ApiToken.objects.get().last_used is None
    assert call(issued.secret).status_code == 200
    first = ApiToken.objects.get().last_used
    assert first is not None
    for _ in range(3):
        call(issued.secret)
    assert ApiToken.objects.get().last_used == first
    # The lookup alone: no UPDATE while the last note is fresh.
    with django_assert_num_queries(1):
        authenticate_key(issued.secret)
    ApiToken.objects.update(last_used=first - LAST_USED_EVERY - timedelta(seconds=1))
    call(issued.secret)
    assert ApiToken.objects.get().last_used > first


def test_making_and_revoking_are_audited_with_who_and_whose(operator: User, admin: User) -> None:
    issued = create_token(operator, "ci", 90, actor=operator)
    revoke_token(issued.token, actor=admin)
    made, revoked = AuditEvent.objects.filter(kind__startswith="token.").order_by("pk")
    assert (made.kind, made.actor, made.data["user"], made.data["name"]) == (
        "token.created", "noc", "noc", "ci",
    )  # fmt: skip
    assert (revoked.kind, revoked.actor, revoked.data["user"]) == ("token.revoked", "root", "noc")
    assert issued.secret not in str(made.data) and issued.token.key_hash not in str(made.data)


def test_issue_token_prints_a_new_named_token(operator: User) -> None:
    out = StringIO()
    call_command("issue_token", "noc", stdout=out)
    first = out.getvalue().strip()
    out = StringIO()
    call_command("issue_token", "noc", "--name", "backup", "--expires-days", "7", stdout=out)
    second = out.getvalue().strip()
    assert first != second
    rows = {t.name: t for t in ApiToken.objects.all()}
    assert rows["manage.py issue_token"].expires is None
    assert rows["backup"].expires is not None
    assert call(first).status_code == 200 and call(second).status_code == 200
    assert issue_token("noc") not in (first, second)
    with pytest.raises(CommandError, match="no operator named 'nobody'"):
        call_command("issue_token", "nobody")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("issue_token", "noc", "--expires-days", "0")


def test_old_drf_tokens_are_hashed_and_keep_working(operator: User) -> None:
    """The data migration's function, run on a DRF token as an upgrading site has it."""
    migration = import_module("portal.accounts.migrations.0002_hash_drf_tokens")
    old = DrfToken.objects.create(user=operator)
    migration.hash_drf_tokens(apps, None)
    assert not DrfToken.objects.exists()  # the plain key is not left behind
    row = ApiToken.objects.get()
    assert (row.key_hash, row.prefix, row.expires) == (hash_key(old.key), old.key[:8], None)
    assert call(old.key).status_code == 200
