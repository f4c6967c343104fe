"""A datacenter's sub-collective on the real ActiveMQ network: its traffic never reaches
another datacenter's broker.

The portal at the NOC sends a request in ``dc_a``; a node of dc_a (subscribed in both its
collectives) answers, a node of dc_b never hears it, and an admin watching ``dc_a.>`` on dc_b's
broker sees nothing, request or reply. dc_b's broker does not even grant its nodes dc_a's
destinations. The whole portal path (discovery, job, stored replies) in a sub-collective is
tests/integration/test_pipe.py::test_a_sub_collective_job_reaches_only_its_datacenter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Filter
from agents.protocol import Request, connect, reply_queue
from agents.protocol.security import SigningKey, TrustedKeys, open_reply
from harness.activemq import DC_A, DC_B, NOC, require_network
from tests.integration.wire import Inbox, publish_signed

pytestmark = [pytest.mark.activemq, pytest.mark.timeout(120)]

PORTAL_KEY = SigningKey.generate()
QUIET = 2.0  # how long a watcher must stay silent after the round trip


@pytest.fixture(scope="module")
def network() -> None:
    require_network()


def _node(identity: str, datacenter: str, broker: tuple[str, int]) -> NodeDaemon:
    daemon = NodeDaemon(
        NodeConfig(
            identity=identity,
            backend="simulated",
            brokers=[broker],
            login="node",
            passcode="node-secret",
            collectives=["mcollective", f"dc_{datacenter}"],
            facts={"datacenter": datacenter},
            register_interval=0,
            require_signatures=True,
        ),
        trusted_keys=TrustedKeys([PORTAL_KEY.public_key]),
    )
    daemon.start(register_periodically=False)
    return daemon


@pytest.fixture
def nodes(network: None) -> Iterator[tuple[NodeDaemon, NodeDaemon]]:
    node_a = _node("sub-a", "a", DC_A)
    node_b = _node("sub-b", "b", DC_B)
    yield node_a, node_b
    node_a.stop()
    node_b.stop()


def _watch(broker: tuple[str, int], user: str, password: str, name: str) -> tuple[Any, Inbox]:
    inbox = Inbox()
    conn = connect([broker], user, password, listeners={"inbox": inbox})
    conn.subscribe("/topic/dc_a.>", id=f"{name}-topics", ack="auto")
    conn.subscribe("/queue/dc_a.>", id=f"{name}-queues", ack="auto")
    return conn, inbox


def test_a_dc_a_request_reaches_dc_a_only(nodes: tuple[NodeDaemon, NodeDaemon]) -> None:
    node_a, node_b = nodes
    # An admin may subscribe to anything anywhere: if the bridges carried dc_a's traffic to
    # dc_b, this watcher would see the request (topic) and compete for the reply (queue).
    watcher, watched = _watch(DC_B, "admin", "admin-secret", "dc-b-watch")
    time.sleep(1.0)  # let a (wrong) demand from dc_b reach the NOC before anything is sent
    inbox = Inbox()
    portal = connect([NOC], "portal", "portal-secret", listeners={"inbox": inbox})
    try:
        reply_to = reply_queue("dc_a", f"subtest_{time.monotonic_ns()}")
        portal.subscribe(reply_to, id="replies", ack="auto")
        request = Request.new(
            senderid="portal", callerid="user=test", collective="dc_a", agent="rpcutil",
            action="ping", data={}, filter=Filter().to_dict(), ttl=30,
        )  # fmt: skip
        time.sleep(0.5)  # the reply queue's subscription crosses to dc_a before the reply does
        publish_signed(portal, request, PORTAL_KEY, reply_to)
        body = inbox.bodies.get(timeout=15)
        reply, *_signature = open_reply(body)
        assert (reply.senderid, reply.requestid) == ("sub-a", request.requestid)
        time.sleep(QUIET)
        assert inbox.bodies.empty(), "one node of dc_a, one reply"
        assert watched.bodies.empty(), "dc_a's traffic reached dc_b's broker"
        assert node_b.stats()["total"] == 0
        assert node_a.stats()["replies"] == 1
    finally:
        portal.disconnect()
        watcher.disconnect()


def test_dc_b_refuses_its_nodes_dc_a_destinations(network: None) -> None:
    """The node login may read dc_a's requests at dc_a's broker, not at dc_b's."""
    conn, inbox = _watch(DC_B, "node", "node-secret", "dc-b-node")
    try:
        error = inbox.errors.get(timeout=10)
    finally:
        if conn.is_connected():
            conn.disconnect()
    assert "User node is not authorized to read from" in error and "dc_a." in error
