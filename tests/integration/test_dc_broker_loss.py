"""Fault: a datacenter broker dies under a running job (issue 8, item 1: the portal's half).

On the real ActiveMQ network: a portal (worker, registration consumer, daphne; PostgreSQL and
Redis) on the NOC broker, and simulated nodes in three groups: datacenter a, whose pool is dc_a
then dc_b; datacenter b, on dc_b only; and c, on dc_a only (no second broker to go to). dc_a
is killed (SIGKILL) while every node is in the middle of an ``echo sleep``. The running job
ends at its collect deadline (the agent's DDL timeout) instead of hanging: b's replies are all
kept; a's nodes fail over to dc_b while they sleep and their replies, sent on the reconnected
link, still arrive; c's nodes are listed as no response. a's nodes register again through
dc_b, and the next job reaches every node of a and b, a's through dc_b's broker.

(The failover of one in-process node is tests/integration/test_failover.py.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from agents.plugins.base import shipped_ddl
from harness.activemq import ACTIVEMQ_PORTS, brokers
from harness.portal import PortalStack
from harness.replies import PrefixedFleet, reply_identities
from harness.services import port_open
from harness.stacks import (
    ENROLMENT_TOKEN,
    activemq_portal,
    portal_public_key,
    require_production_services,
)
from portal.core import stack
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

GROUPS = ("a", "b", "c")  # the nodes' datacenter fact
PER_GROUP = 6
USER = "admin"
DC_A = f"127.0.0.1:{ACTIVEMQ_PORTS['dc_a']}"
DC_B = f"127.0.0.1:{ACTIVEMQ_PORTS['dc_b']}"
# Not test_pipe's 7, test_restarts' 9 nor the fan-out bench's 13: they may run at the same time.
REDIS_URL = "redis://127.0.0.1:6379/11"
# Long enough to kill the broker while every node sleeps; the job waits up to the agent's
# DDL timeout for replies, so a job that "hangs" is one still running well after that.
SLEEP_SECONDS = 5.0
ECHO_TIMEOUT = shipped_ddl("echo").timeout


@dataclass
class Fleet(PrefixedFleet):
    """This test's nodes, in three groups (their datacenter fact: a, b, c)."""

    def seen_since(self, moment: datetime) -> set[str]:
        """This test's nodes whose registration the portal stored after ``moment``."""
        rows = self.portal.query("SELECT identity FROM inventory_node WHERE last_seen > %s", moment)
        return {identity for (identity,) in rows if identity.startswith(self.prefix)}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    require_production_services()
    prefix = f"dcl{uuid.uuid4().hex[:6]}-"
    try:
        with (
            Supervisor(tmp_path / "logs") as sup,
            activemq_portal(sup, tmp_path, REDIS_URL, users=(USER,)) as portal,
        ):
            stack.start_simulator(
                sup,
                # a's pool: dc_a first, dc_b as the second; b and c have one broker each.
                {"a": f"{DC_A},{DC_B}", "b": DC_B, "c": DC_A},
                len(GROUPS) * PER_GROUP,
                seed=13,
                login="node",
                passcode="node-secret",
                trusted_key=portal_public_key(tmp_path),
                enrolment_token=ENROLMENT_TOKEN,
                identity_prefix=prefix,
            )
            running = Fleet(portal, prefix)
            assert eventually(lambda: len(running.nodes()) == len(GROUPS) * PER_GROUP, 60)
            portal.login(USER)
            yield running
    finally:
        # The network is shared: leave it whole for the tests after this one.
        if not port_open("127.0.0.1", ACTIVEMQ_PORTS["dc_a"]):
            brokers("start", "dc_a")
        brokers("probe")


def test_a_running_job_rides_out_the_loss_of_a_datacenter_broker(fleet: Fleet) -> None:
    portal = fleet.portal
    in_a, in_b, in_c = (fleet.nodes(group) for group in GROUPS)
    assert len(in_a) == len(in_b) == len(in_c) == PER_GROUP
    ping = {"agent": "rpcutil", "action": "ping", "filter": fleet.filter}
    # The bridges carry the nodes' subscriptions to the NOC: every node answers.
    before = portal.finished(portal.submit(ping))
    assert before["status"] == "completed", before
    assert reply_identities(before) == in_a | in_b | in_c

    sleep = {
        "agent": "echo",
        "action": "sleep",
        "inputs": {"seconds": SLEEP_SECONDS},
        "filter": fleet.filter,
    }
    submitted_at = time.monotonic()
    running = portal.submit(sleep)
    # Once the request is published the nodes get it within milliseconds; a second later
    # they are all sleeping, with 4 s to go.
    assert eventually(lambda: _requestid(portal, running) != "", 30)
    time.sleep(1.0)
    assert not portal.job(running)["finished"]
    killed_in_db = _db_now(portal)
    brokers("kill", "dc_a")

    # The job waits for c's nodes until its collect deadline, then ends: not "running" for
    # ever, and not failed (the NOC link is fine; only some nodes did not answer).
    finished = portal.finished(running, timeout=ECHO_TIMEOUT + 30)
    took = time.monotonic() - submitted_at
    assert finished["status"] == "completed", finished
    assert ECHO_TIMEOUT <= took < ECHO_TIMEOUT + 10, f"the job took {took:.1f} s"
    # None of b's replies is lost; a's nodes answered through dc_b once they had failed over
    # (a reply goes out on the node's connection as it is when the action ends).
    assert reply_identities(finished) == in_a | in_b
    assert all(reply["statuscode"] == 0 for reply in finished["replies"]), finished["replies"]
    assert {reply["data"]["slept"] for reply in finished["replies"]} == {SLEEP_SECONDS}
    assert portal.stored_replies(running) == in_a | in_b
    # c's nodes lost their only broker mid-action: listed as no response.
    assert sorted(finished["no_response"]) == sorted(in_c)
    assert finished["counts"] == {
        "expected": 3 * PER_GROUP,
        "replied": 2 * PER_GROUP,
        "ok": 2 * PER_GROUP,
        "failed": 0,
        "no_response": PER_GROUP,
        "waiting": 0,
        "not_sent": 0,
    }

    # a's nodes registered again after the kill: through dc_b, the only broker left to them.
    assert eventually(lambda: in_a <= fleet.seen_since(killed_in_db), 60), (
        f"not registered again since dc_a died: {sorted(in_a - fleet.seen_since(killed_in_db))}"
    )
    # The next job reaches every node of a and b, a's through dc_b's broker; c's nodes are
    # still cut off.
    after = portal.finished(portal.submit(ping))
    assert after["status"] == "completed", after
    assert reply_identities(after) == in_a | in_b
    assert sorted(after["no_response"]) == sorted(in_c)
    stats_job = {
        "agent": "rpcutil",
        "action": "daemon_stats",
        "filter": f"{fleet.filter} and not datacenter=c",
    }
    links = portal.finished(portal.submit(stats_job))
    assert links["status"] == "completed", links
    stats = {reply["identity"]: reply["data"] for reply in links["replies"]}
    assert set(stats) == in_a | in_b
    assert {stats[node]["broker"] for node in in_a | in_b} == {DC_B}
    assert all(stats[node]["reconnects"] == 1 for node in in_a), stats
    assert all(stats[node]["reconnects"] == 0 for node in in_b), stats
    print(
        f"\ndc_a killed mid-job: the job ended {finished['status']} {took:.1f} s after it was "
        f"submitted (agent timeout {ECHO_TIMEOUT:g} s), {len(finished['replies'])} replies, "
        f"no response: {len(finished['no_response'])}"
    )


def _requestid(portal: PortalStack, job_id: int) -> str:
    """The request id the runner records just before it publishes the request."""
    return str(portal.query("SELECT requestid FROM jobs_job WHERE id = %s", job_id)[0][0])


def _db_now(portal: PortalStack) -> datetime:
    """The database's clock, which stamps the nodes' ``last_seen``."""
    return portal.query("SELECT now()")[0][0]
