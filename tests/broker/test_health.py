"""The broker status page: each configured broker reachable or not, since when, and why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from harness.services import free_port
from portal.broker.gateway import BrokerSettings
from portal.broker.health import check_brokers
from portal.broker.models import BrokerLink
from portal.core.embedded_broker import EmbeddedBroker

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(port=0).start()
    yield server
    server.stop()


def _settings(brokers: str) -> BrokerSettings:
    return BrokerSettings(brokers=brokers, login="", passcode="", collective="mcollective")


def test_each_broker_is_shown_with_its_state_since_and_reason(broker: EmbeddedBroker) -> None:
    closed = f"127.0.0.1:{free_port()}"
    up, down = check_brokers(_settings(f"{broker.address},{closed}"))
    assert (up.address, up.connected, up.last_error) == (broker.address, True, "")
    assert (down.address, down.connected) == (closed, False)
    assert down.last_error  # why: nothing answered
    first_since = up.since

    # Unchanged state keeps its "since"; a flip moves it.
    again, _ = check_brokers(_settings(f"{broker.address},{closed}"))
    assert again.since == first_since and again.checked_at > first_since
    broker.stop()
    (gone,) = check_brokers(_settings(broker.address))
    assert not gone.connected and gone.since > first_since
    assert BrokerLink.objects.count() == 1  # brokers no longer configured are forgotten


def test_the_status_page_lists_the_brokers(operator: User, broker: EmbeddedBroker) -> None:
    check_brokers(_settings(broker.address))
    client = Client()
    client.force_login(operator)
    page = client.get("/brokers/").content.decode()
    assert f'data-broker="{broker.address}"' in page and "reachable" in page
