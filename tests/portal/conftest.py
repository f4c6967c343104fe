"""Fixtures for the portal's unit tests: users and a recorder for queued Celery tasks."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User


@pytest.fixture
def operator(db: None) -> User:
    user = User.objects.create_user("noc", password="pw-noc-123")
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    return user


@pytest.fixture
def other_operator(db: None) -> User:
    return User.objects.create_user("noc2", password="pw-noc2-123")


@pytest.fixture
def queued_tasks() -> Iterator[mock.MagicMock]:
    """Records what would be sent to Celery (the queue itself is covered by integration tests)."""
    with mock.patch("portal.jobs.services.celery_app.send_task") as send_task:
        yield send_task
