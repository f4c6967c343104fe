"""Fixtures for the audit tests: readers of the history, and a clock to write old events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from portal.audit.models import AuditEvent
from portal.audit.services import record_event


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    """A cheap hasher: these tests log in a lot, and the machine is shared."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(db: None) -> User:
    """A NOC operator who is not a manager, with no grants (granting writes audit events,
    and these tests count events)."""
    user = User.objects.create_user("noc", password="pw-noc-123")
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    return user


@pytest.fixture
def manager(db: None) -> User:
    """A manager (group ``manager``): reads the audit history."""
    user = User.objects.create_user("mgr", password="pw-mgr-123")
    user.groups.add(Group.objects.get_or_create(name="manager")[0])
    return user


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", password="pw-root-123")


@pytest.fixture
def manager_client(manager: User) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@contextmanager
def clock(moment: datetime) -> Iterator[None]:
    """Events recorded inside are stamped ``moment`` (record_event reads timezone.now)."""
    with mock.patch("portal.audit.services.timezone.now", return_value=moment):
        yield


@pytest.fixture
def make_event() -> Callable[..., AuditEvent]:
    def make(kind: str = "job.submitted", **fields: object) -> AuditEvent:
        fields.setdefault("actor", "noc")
        return record_event(kind, **fields)  # type: ignore[arg-type]

    return make


@contextmanager
def tampering() -> Iterator[None]:
    """Direct changes to audit rows, as someone with database access could make them.

    On PostgreSQL the append-only trigger is switched off for the test's transaction only
    (ALTER TABLE is transactional; the test's rollback restores it).
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses while deferred foreign-key checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        yield
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def tamper(sql: str, params: list[object]) -> None:
    with tampering(), connection.cursor() as cursor:
        cursor.execute(sql, params)
