"""Shared test plumbing: portal users, grants and a small enrolled fleet. Skipping (or, in CI,
failing) for a missing service is ``harness.services.require_service``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User


@pytest.fixture
def operator(db: None) -> User:
    """A NOC operator (role ``operator``) whose role ``ops`` may run every agent, unscoped."""
    user = User.objects.create_user("noc", password="pw-noc-123")
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    user.groups.add(grant_every_agent("ops"))
    return user


def grant_every_agent(role: str, scope: str = "") -> Group:
    """A role that may run every action of every agent (within ``scope``, if given)."""
    from portal.rbac.models import Agent
    from portal.rbac.services import GrantSpec, set_grant, sync_catalog

    sync_catalog()
    group, _ = Group.objects.get_or_create(name=role)
    for agent in Agent.objects.values_list("name", flat=True):
        set_grant(GrantSpec(role, agent, None, scope), actor=None)
    return group


@pytest.fixture
def other_operator(db: None) -> User:
    return User.objects.create_user("noc2", password="pw-noc2-123")


@pytest.fixture
def queued_tasks() -> Iterator[mock.MagicMock]:
    """Records what would be sent to Celery (the queue itself is covered by integration tests)."""
    with mock.patch("portal.jobs.lifecycle.celery_app.send_task") as send_task:
        yield send_task


def enrol_accepted(keys: dict[str, Any]) -> None:
    """Accepted enrolments pinning these keys (identity -> SigningKey), as if an admin had
    accepted each node: for tests that lay the inventory out by hand."""
    from django.utils import timezone

    from portal.inventory.models import Enrolment

    now = timezone.now()
    Enrolment.objects.bulk_create(
        Enrolment(
            identity=identity,
            state=Enrolment.State.ACCEPTED,
            public_key=key.public_pem(),
            key_id=key.key_id,
            first_seen=now,
            last_seen=now,
            decided_at=now,
        )
        for identity, key in keys.items()
    )


FLEET = ("web1.example", "web2.example", "db1.example")


@pytest.fixture
def fleet(db: None) -> list[str]:
    """Three fresh inventory nodes of customer ``acme`` (datacenters a, a, b; classes ``web``,
    ``web``, ``db``), for tests that
    submit jobs: a job whose plan reaches no node is refused, as it is in production."""
    from django.utils import timezone

    from portal.inventory.models import Node

    now = timezone.now()
    Node.objects.bulk_create(
        Node(
            identity=identity,
            facts={"customer": "acme", "datacenter": "aab"[n]},
            classes=["base", identity[: -len("1.example")]],
            first_seen=now,
            last_seen=now,
            registered_at=now,
        )
        for n, identity in enumerate(FLEET)
    )
    return list(FLEET)
