"""Accounts' fixtures: an admin by role (not a superuser), logged in."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client


@pytest.fixture
def admin(db: None) -> User:
    """An admin by the ``admin`` role (the rules about one's own admin role apply to them)."""
    user = User.objects.create_user("root", password="pw-root-123", email="root@example.net")
    user.groups.add(Group.objects.get_or_create(name="admin")[0])
    return user


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    """The Django messages the answered page shows."""
    return [str(message) for message in response.context["messages"]]
