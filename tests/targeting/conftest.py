"""Fixtures for saved filters: operators in and out of roles, and a logged-in API client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client


def _user(username: str, *roles: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username, password=f"pw-{username}-123")
    user.is_superuser = superuser
    user.save()
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def alice(db: None) -> User:
    """An operator in two roles: ``operator`` and ``dba``."""
    return _user("alice", "operator", "dba")


@pytest.fixture
def bob(db: None) -> User:
    """Another operator, in ``operator`` only."""
    return _user("bob", "operator")


@pytest.fixture
def carol(db: None) -> User:
    """Someone in no role at all."""
    return _user("carol")


@pytest.fixture
def root(db: None) -> User:
    """A superuser in no role."""
    return _user("root", superuser=True)


@pytest.fixture
def client_for() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
