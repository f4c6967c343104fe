from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings

from agents.protocol import Registration
from portal.inventory.services import record_registrations
from portal.rbac.services import GrantSpec, set_grant, sync_catalog

# Eight nodes: two customers x two datacenters x web/db.
FLEET = [
    (f"{customer}-{dc}-{role}", {"customer": customer, "datacenter": dc, "role": role})
    for customer in ("acme", "globex")
    for dc in ("a", "b")
    for role in ("web", "db")
]


@pytest.fixture
def fleet(db: None) -> list[str]:
    record_registrations(
        [
            Registration(
                identity=identity,
                collectives=["mcollective"],
                facts=facts,
                classes=["base", facts["role"]],
                agents=["rpcutil", "service"],
                msgtime=time.time(),
            )
            for identity, facts in FLEET
        ]
    )
    return [identity for identity, _ in FLEET]


@pytest.fixture
def make_operator(db: None) -> Callable[..., User]:
    """An operator in one role whose grants are given as GrantSpec keyword lists."""
    sync_catalog()

    def make(name: str, role: str, *grants: dict) -> User:
        user = User.objects.create_user(name, password=f"pw-{name}-123")
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
        for grant in grants:
            set_grant(GrantSpec(role=role, **grant), actor=None)
        return user

    return make


@pytest.fixture
def acme_operator(make_operator: Callable[..., User]) -> User:
    """May run rpcutil (all) and service status/restart, only on customer=acme."""
    return make_operator(
        "acmeop",
        "acme-noc",
        {"agent": "rpcutil", "scope": "customer=acme"},
        {"agent": "service", "actions": ("status", "restart"), "scope": "customer=acme"},
    )


@pytest.fixture(autouse=True)
def in_memory_channel_layer() -> Iterator[None]:
    """Frames go to an in-memory layer: these tests have no broker for the STOMP layer."""
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield
