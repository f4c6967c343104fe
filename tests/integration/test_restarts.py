"""Fault: the NOC broker restarts under a running portal (issue 8, item 4).

On the real ActiveMQ network: a portal (worker, registration consumer, daphne; PostgreSQL and
Redis) on the NOC broker, simulated nodes on both datacenter brokers. The NOC broker is stopped
and started again while a job runs; no portal process is restarted. The running job ends
failed with the reason, a job submitted while the broker is away fails at once, the broker
status page shows the NOC down and then up, the registration consumer reconnects by itself
(a node that starts afterwards reaches the inventory), and a job after the restart gets a reply
from every node.

(The other restart, of the ASGI server under an open job page, is a browser test:
tests/browser/test_job_reconnect.py.)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.protocol.security import SigningKey, TrustedKeys
from harness.activemq import ACTIVEMQ_PORTS, brokers
from harness.portal import PortalStack
from harness.replies import PrefixedFleet, reply_identities
from harness.services import port_open
from harness.stacks import (
    ENROLMENT_TOKEN,
    activemq_fleet,
    activemq_portal,
    portal_public_key,
    require_production_services,
)
from portal.core.supervisor import Supervisor
from tests.integration.wire import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.activemq,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.faults,
    pytest.mark.timeout(600),
]

NODE_COUNT = 10
USER = "admin"
NOC = f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}"
# Not test_pipe's database 7: the two may run at the same time.
REDIS_URL = "redis://127.0.0.1:6379/9"
# The worker sweeps (orphaned jobs, broker states) every half of this: every 6 s here.
SWEEP_ENV = {"SWITCHBOARD_JOB_STALE_AFTER": "12"}
SUBSCRIBED = "subscribed to /queue/mcollective.registration"


@dataclass
class Fleet(PrefixedFleet):
    """This test's nodes, and where the portal's key is (a late node must trust it)."""

    tmp: Path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    require_production_services()
    prefix = f"rst{uuid.uuid4().hex[:6]}-"
    try:
        with (
            Supervisor(tmp_path / "logs") as sup,
            activemq_portal(sup, tmp_path, REDIS_URL, SWEEP_ENV, users=(USER,)) as portal,
        ):
            activemq_fleet(
                sup,
                NODE_COUNT,
                seed=11,
                trusted_key=portal_public_key(tmp_path),
                enrolment_token=ENROLMENT_TOKEN,
                identity_prefix=prefix,
            )
            running = Fleet(portal, prefix, tmp_path)
            assert eventually(lambda: len(running.nodes()) == NODE_COUNT, 60)
            portal.login(USER)
            yield running
    finally:
        # The network is shared: leave the NOC running whatever happened.
        if not port_open("127.0.0.1", ACTIVEMQ_PORTS["noc"]):
            brokers("start", "noc")


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_portal_rides_out_a_noc_broker_restart(fleet: Fleet, how: str) -> None:
    """``stop`` is a graceful broker stop; ``kill`` a crash (SIGKILL)."""
    portal, sup = fleet.portal, fleet.portal.supervisor
    pids = {child.name: child.process.pid for child in sup.children if child.process}
    ping = {"agent": "rpcutil", "action": "ping", "filter": fleet.filter}
    before = portal.finished(portal.submit(ping))
    assert before["status"] == "completed", before
    assert reply_identities(before) == fleet.nodes()
    assert eventually(lambda: _noc_state(portal) == "reachable", 30)

    # A job in batches of 2, 6 s apart: it is between batches when the NOC goes away.
    running = portal.submit({**ping, "options": {"batch_size": 2, "batch_sleep": 6}})
    assert eventually(lambda: portal.job(running)["counts"]["replied"] >= 2, 30)
    restart_log_mark = _log(sup, "registrations").count(SUBSCRIBED)
    brokers(how, "noc")
    down_at = time.monotonic()
    try:
        # The running job ends, failed with the reason, its first replies kept.
        interrupted = portal.finished(running, timeout=60)
        assert interrupted["status"] == "failed", interrupted
        assert "message broker unavailable" in interrupted["error"], interrupted["error"]
        assert "lost the connection to " + NOC in interrupted["error"], interrupted["error"]
        assert 2 <= interrupted["counts"]["replied"] < NODE_COUNT
        assert len(interrupted["replies"]) == interrupted["counts"]["replied"]
        # A job submitted now fails at once, naming the broker.
        refused = portal.finished(portal.submit(ping), timeout=60)
        assert refused["status"] == "failed", refused
        assert refused["error"].startswith("message broker unavailable: could not connect")
        assert NOC in refused["error"]
        # The worker's sweep sees the NOC down: the status page says so.
        assert eventually(lambda: _noc_state(portal) == "unreachable", 30)
        assert "lost the broker connection; reconnecting" in _log(sup, "registrations")
    finally:
        brokers("start", "noc")
    up_at = time.monotonic()

    # No portal process was restarted, and each of them comes back by itself.
    sup.check()
    assert {c.name: c.process.pid for c in sup.children if c.process} == pids
    assert eventually(lambda: _noc_state(portal) == "reachable", 30)
    assert eventually(
        lambda: _log(sup, "registrations").count(SUBSCRIBED) > restart_log_mark, 90
    ), _log(sup, "registrations")[-3000:]
    resubscribed_at = time.monotonic()
    # The bridges from the datacenters are back (the probe waits for the round trip) ...
    assert brokers("probe", check=False) == 0
    # ... so a node that starts now reaches the inventory through the reconnected consumer,
    late = _late_node(fleet)
    try:
        assert eventually(lambda: late.identity in fleet.nodes(), 60)
        # ... and a new job reaches every node, the late one too.
        after = portal.finished(portal.submit(ping))
        assert after["status"] == "completed", after
        assert reply_identities(after) == fleet.nodes()
        assert len(fleet.nodes()) == NODE_COUNT + 1
        assert after["no_response"] == []
        print(
            f"\nNOC {how}: down {up_at - down_at:.1f} s; the consumer resubscribed "
            f"{resubscribed_at - up_at:.1f} s after; the running job: {interrupted['error']!r}"
        )
    finally:
        late.stop()


def _late_node(fleet: Fleet) -> NodeDaemon:
    """One more node, on dc_b, started after the restart: it registers once, at start."""
    daemon = NodeDaemon(
        NodeConfig(
            identity=f"{fleet.prefix}late.b.example",
            facts={"datacenter": "b", "customer": "acme"},
            backend="simulated",
            brokers=[("127.0.0.1", ACTIVEMQ_PORTS["dc_b"])],
            login="node",
            passcode="node-secret",
            register_interval=0,
            enrolment_token=ENROLMENT_TOKEN,  # the stack auto-accepts by token
        ),
        trusted_keys=TrustedKeys.from_files([portal_public_key(fleet.tmp)]),
        signing_key=SigningKey.generate(),
    )
    daemon.start()
    return daemon


def _noc_state(portal: PortalStack) -> str:
    """What the broker status page says of the NOC broker: reachable, unreachable or absent."""
    page = portal.session.get(portal.base_url + "/brokers/", timeout=30)
    assert page.status_code == 200, page.text[:500]
    row = re.search(rf'<tr data-broker="{re.escape(NOC)}">(.*?)</tr>', page.text, re.S)
    if row is None:
        return "absent"
    state = re.search(r'<span class="status [^"]*">(\w+)</span>', row.group(1))
    return state.group(1) if state else "absent"


def _log(sup: Supervisor, name: str) -> str:
    child = next(c for c in sup.children if c.name == name)
    return child.log_path.read_text(errors="replace")
