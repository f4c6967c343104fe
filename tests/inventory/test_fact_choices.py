"""Choices for a DDL input from a fact's values across the targeted nodes."""

from __future__ import annotations

import time

import pytest

from agents.ddl import load_ddl
from agents.filters import Filter
from agents.protocol import Registration
from portal.inventory.fact_values import fact_choices
from portal.inventory.services import record_registrations

pytestmark = pytest.mark.django_db


def _node(identity: str, **facts: object) -> Registration:
    return Registration(
        identity=identity, collectives=["mcollective"], facts=facts, classes=[], agents=[],
        msgtime=time.time(),
    )  # fmt: skip


def test_values_of_the_targeted_nodes_only_most_common_first() -> None:
    record_registrations(
        [
            _node("w1", customer="acme", services=["nginx", "sshd"]),
            _node("w2", customer="acme", services=["nginx", "sshd", "cron"]),
            _node("d1", customer="acme", services="postgresql"),
            _node("g1", customer="globex", services=["apache2"]),
            _node("x1", customer="acme", services={"odd": "object"}, enabled=True),
        ]
    )
    choices = fact_choices(Filter.parse("customer=acme"), "services")
    assert choices.values == [("nginx", 2), ("sshd", 2), ("cron", 1), ("postgresql", 1)]
    assert (choices.nodes, choices.truncated) == (4, False)
    assert fact_choices(Filter.parse("customer=acme"), "enabled").values == [("true", 1)]
    assert fact_choices(Filter.parse("customer=none"), "services").values == []


def test_the_service_ddl_offers_the_services_fact() -> None:
    restart = load_ddl("service").action("restart").input["service"]
    assert restart.choices_from_fact == "services"


def test_the_api_answers_choices_and_clear_errors(client_for_operator) -> None:
    record_registrations([_node("w1", customer="acme", services=["nginx"])])
    ok = client_for_operator.get(
        "/api/inventory/fact-choices/", {"fact": "services", "filter": "customer=acme"}
    )
    assert ok.status_code == 200
    assert ok.json() == {
        "fact": "services", "values": [{"value": "nginx", "nodes": 1}], "nodes": 1,
        "truncated": False,
    }  # fmt: skip
    for params in ({"fact": "", "filter": ""}, {"fact": "x y"}, {"fact": "a", "filter": "a=="}):
        bad = client_for_operator.get("/api/inventory/fact-choices/", params)
        assert bad.status_code == 400 and bad.json()["error"]


@pytest.fixture
def client_for_operator(operator):
    from django.test import Client

    client = Client()
    client.force_login(operator)
    return client
