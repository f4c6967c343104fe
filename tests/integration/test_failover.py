"""Fault tests on the real ActiveMQ network: a node's broker dies, the node moves on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.protocol.security import SigningKey, TrustedKeys
from harness.activemq import DC_A, DC_B, NOC, brokers, require_network
from harness.services import port_open
from tests.integration.wire import eventually, ping

pytestmark = [pytest.mark.activemq, pytest.mark.faults, pytest.mark.timeout(300)]

BASE_DIR = Path(__file__).resolve().parents[2]
PORTAL_KEY = SigningKey.generate()


@pytest.fixture
def node() -> Iterator[NodeDaemon]:
    require_network()
    daemon = NodeDaemon(
        NodeConfig(
            identity="failover-node",
            backend="simulated",
            brokers=[DC_A, DC_B],  # its datacenter's pool: dc_a first, dc_b as the second
            login="node",
            passcode="node-secret",
            register_interval=0,
        ),
        trusted_keys=TrustedKeys([PORTAL_KEY.public_key]),
    )
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        if not port_open(*DC_A):
            brokers("start", "dc_a")
        brokers("probe")  # the network is whole again for the tests after this one


def reached_from_noc() -> bool:
    """A signed ping for the node, published at the NOC, is answered."""
    return ping(NOC, "portal", "portal-secret", "failover-node", PORTAL_KEY) == ["failover-node"]


def test_a_node_moves_to_its_second_broker_when_the_first_dies(node: NodeDaemon) -> None:
    # Bridges need a moment to carry the node's new subscription to the NOC.
    assert eventually(reached_from_noc, 30)

    brokers("kill", "dc_a")
    assert eventually(lambda: node.stats()["reconnects"] >= 1, 60)
    assert node.is_connected()
    # Resubscribed on dc_b: the next request from the NOC reaches it through dc_b's bridge.
    assert eventually(reached_from_noc, 60)

    brokers("start", "dc_a")
    assert port_open(*DC_A)
