"""Two registration consumers at once (issue 16, item 4): each registration is taken by one.

Black-box, on real processes: two ``manage.py consume_registrations`` on one broker (the
embedded one, and the ActiveMQ network's NOC with the nodes on the datacenter brokers), a
fleet of simulated nodes, and each consumer's own count of what it took, from the line it
writes when it stops. On ActiveMQ also: registrations sent while no consumer runs wait for one
(across the bridges), and one past its ``expires`` is dropped by the broker.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.protocol.security import SigningKey
from harness.activemq import ACTIVEMQ_PORTS
from harness.portal import PortalStack
from harness.stacks import (
    ENROLMENT_TOKEN,
    activemq_fleet,
    activemq_portal,
    embedded_portal,
    portal_public_key,
    require_production_services,
)
from portal.core import stack
from portal.core.supervisor import Supervisor
from tests.integration.wire import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODES = 30
CONSUMERS = ("registrations", "registrations-2")
REDIS_TEST_URL = "redis://127.0.0.1:6379/13"
STOPPED = re.compile(r"^registration consumer stopped: (\d+) received, .*; refused: (.*)$", re.M)


def stop_consumer(sup: Supervisor, name: str) -> tuple[int, str]:
    """SIGTERM one consumer; what it said it received, and its refusals ("none")."""
    sup.terminate(name)
    found = STOPPED.findall((sup.log_dir / f"{name}.log").read_text())
    assert len(found) == 1, f"{name} wrote no (or several) stop lines"
    received, refused = found[0]
    return int(received), refused


def assert_each_registration_taken_once(portal: PortalStack, sup: Supervisor) -> None:
    """Every node once in the inventory, and the consumers' counts add up to one
    registration per node (each node registered once: its interval is 300 s), both busy."""
    portal.wait_for_inventory(NODES, timeout=60)
    rows = portal.query("SELECT identity FROM inventory_node")
    assert len(rows) == len({identity for (identity,) in rows}) == NODES
    counts = [stop_consumer(sup, name) for name in CONSUMERS]
    assert [refused for _, refused in counts] == ["none", "none"]  # no 'replayed' either
    taken = [received for received, _ in counts]
    assert sum(taken) == NODES, f"taken per consumer: {taken}"
    assert min(taken) > 0, f"one consumer took everything: {taken}"


def test_two_consumers_on_the_embedded_broker_take_each_registration_once(
    tmp_path: Path,
) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        portal = embedded_portal(sup, tmp_path)
        stack.start_registration_consumer(sup, env=portal.env, name=CONSUMERS[1])
        brokers = portal.env["STOMP_BROKERS"]
        stack.start_simulator(
            sup, {"a": brokers, "b": brokers}, NODES, seed=5,
            trusted_key=portal_public_key(tmp_path), sub_collectives=True,
            enrolment_token=ENROLMENT_TOKEN, identity_prefix="twice",
        )  # fmt: skip
        assert_each_registration_taken_once(portal, sup)


def register_once(identity: str, broker: str, register_interval: float) -> None:
    """A real node registers once at ``broker`` (a datacenter's) and goes away; its
    registration expires ``registration_ttl(register_interval)`` after it was sent."""
    host, port = broker.split(":")
    node = NodeDaemon(
        NodeConfig(
            identity=identity, brokers=[(host, int(port))], login="node", passcode="node-secret",
            register_interval=register_interval, backend="simulated",
            enrolment_token=ENROLMENT_TOKEN,
        ),
        signing_key=SigningKey.derive(f"late:{identity}".encode()),
    )  # fmt: skip
    node.start(register_periodically=False)
    node.stop()


@pytest.mark.activemq
def test_two_consumers_on_the_noc_broker_and_registrations_waiting_for_one(
    tmp_path: Path,
) -> None:
    require_production_services()
    dc_a = f"127.0.0.1:{ACTIVEMQ_PORTS['dc_a']}"
    dc_b = f"127.0.0.1:{ACTIVEMQ_PORTS['dc_b']}"
    with (
        Supervisor(tmp_path / "logs") as sup,
        activemq_portal(sup, tmp_path, REDIS_TEST_URL) as portal,
    ):
        stack.start_registration_consumer(sup, env=portal.env, name=CONSUMERS[1])
        activemq_fleet(
            sup, NODES, seed=5, trusted_key=portal_public_key(tmp_path), sub_collectives=True,
            enrolment_token=ENROLMENT_TOKEN, identity_prefix="twice",
        )  # fmt: skip
        assert_each_registration_taken_once(portal, sup)

        # No consumer now: the NOC's demand leaves the bridges, so these wait at dc_a and dc_b.
        time.sleep(1)
        register_once("late-a", dc_a, register_interval=300)  # expires in 600 s
        register_once("late-b", dc_b, register_interval=300)
        register_once("late-expired", dc_a, register_interval=1)  # expires in 2 s
        time.sleep(4)
        stack.start_registration_consumer(sup, env=portal.env, name="registrations-3")
        assert eventually(lambda: {"late-a", "late-b"} <= set(portal.stored_nodes()), timeout=60)
        time.sleep(3)  # long enough for the expired one to arrive, were it not dropped
        assert "late-expired" not in portal.stored_nodes()
        assert len(portal.stored_nodes()) == NODES + 2
        assert stop_consumer(sup, "registrations-3") == (2, "none")
