"""Fault tests on the real ActiveMQ network: a node's broker dies, the node moves on."""

from __future__ import annotations

import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Filter
from agents.protocol import (
    Request,
    broadcast_topic,
    connect,
    reply_queue,
    request_headers,
)
from agents.protocol.security import SigningKey, TrustedKeys, open_reply, seal_request
from tests.conftest import port_open, require_service

pytestmark = [pytest.mark.activemq, pytest.mark.faults, pytest.mark.timeout(300)]

BASE_DIR = Path(__file__).resolve().parents[2]
NOC, DC_A, DC_B = ("127.0.0.1", 62613), ("127.0.0.1", 62623), ("127.0.0.1", 62633)
PORTAL_KEY = SigningKey.generate()


def brokers(*args: str) -> None:
    subprocess.run([str(BASE_DIR / "scripts" / "brokers"), *args], check=True, timeout=120)


class Inbox(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.bodies: queue.Queue[str] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.bodies.put(frame.body)


@pytest.fixture
def node() -> Iterator[NodeDaemon]:
    require_service(
        "The ActiveMQ network",
        all(port_open(*address) for address in (NOC, DC_A, DC_B)),
        "start it with `scripts/brokers up`",
    )
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


def ping_from_noc(timeout: float = 10.0) -> list[str]:
    """Publish a signed ping for the node at the NOC; who answered within ``timeout``."""
    inbox = Inbox()
    conn = connect([NOC], "portal", "portal-secret", listeners={"inbox": inbox})
    try:
        reply_to = reply_queue("mcollective", f"failover_{time.monotonic_ns()}")
        conn.subscribe(reply_to, id="replies", ack="auto")
        request = Request.new(
            collective="mcollective",
            agent="rpcutil",
            action="ping",
            callerid="user=failover-test",
            filter=Filter(identity=["failover-node"]),
        )
        conn.send(
            broadcast_topic("mcollective", "rpcutil"),
            seal_request(request, PORTAL_KEY),
            headers=request_headers(reply_to, request.msgtime, request.ttl),
        )
        try:
            return [open_reply(inbox.bodies.get(timeout=timeout))[0].senderid]
        except queue.Empty:
            return []
    finally:
        conn.disconnect()


def test_a_node_moves_to_its_second_broker_when_the_first_dies(node: NodeDaemon) -> None:
    # Bridges need a moment to carry the node's new subscription to the NOC.
    assert _eventually(lambda: ping_from_noc(3.0) == ["failover-node"], 30)

    brokers("kill", "dc_a")
    assert _eventually(lambda: node.stats()["reconnects"] >= 1, 60)
    assert node.is_connected()
    # Resubscribed on dc_b: the next request from the NOC reaches it through dc_b's bridge.
    assert _eventually(lambda: ping_from_noc(3.0) == ["failover-node"], 60)

    brokers("start", "dc_a")
    assert port_open(*DC_A)


def _eventually(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False
