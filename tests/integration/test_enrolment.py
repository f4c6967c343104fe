"""Enrolment in a running system: new nodes wait for an admin; a forged identity cannot answer.

Black-box, as an admin and an attacker on the broker would meet it: the portal's processes,
real simulated nodes, the API, the pages and ``manage.py nodes``; on the embedded profile and on
the production parts (ActiveMQ, PostgreSQL, Redis) with auto-acceptance off.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp

from agents.protocol import (
    Registration,
    Reply,
    broadcast_topic,
    connect,
    decode_request,
    registration_queue,
)
from agents.protocol.security import SigningKey, seal_registration, seal_reply
from harness.portal import PortalStack
from harness.stacks import (
    activemq_fleet,
    activemq_portal,
    embedded_portal,
    embedded_stack,
    portal_public_key,
    require_production_services,
)
from portal.core import stack
from portal.core.supervisor import Supervisor
from tests.integration.wire import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODES = 6
USER = "admin"
REDIS_TEST_URL = "redis://127.0.0.1:6379/8"
MANUAL = {"SWITCHBOARD_AUTO_ACCEPT": ""}  # production's default: an admin accepts each node


def _embedded_manual(tmp: Path) -> Iterator[PortalStack]:
    with Supervisor(tmp / "logs") as sup:
        portal = embedded_portal(sup, tmp, MANUAL, users=(USER,))
        brokers = portal.env["STOMP_BROKERS"]
        stack.start_simulator(
            sup, {"a": brokers, "b": brokers}, NODES, seed=11,
            trusted_key=portal_public_key(tmp), identity_prefix="enrol",
        )  # fmt: skip
        yield portal


def _activemq_manual(tmp: Path) -> Iterator[PortalStack]:
    require_production_services()
    with (
        Supervisor(tmp / "logs") as sup,
        activemq_portal(sup, tmp, REDIS_TEST_URL, env=MANUAL, users=(USER,)) as portal,
    ):
        activemq_fleet(
            sup, NODES, seed=11, trusted_key=portal_public_key(tmp), identity_prefix="enrol"
        )
        yield portal


@pytest.fixture(
    params=[
        pytest.param("embedded"),
        pytest.param(
            "activemq", marks=[pytest.mark.activemq, pytest.mark.postgres, pytest.mark.redis]
        ),
    ]
)
def manual_portal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PortalStack]:
    start = _embedded_manual if request.param == "embedded" else _activemq_manual
    yield from start(tmp_path)


def pending(portal: PortalStack) -> list[str]:
    response = portal.api("GET", "/api/enrolment/?state=pending")
    assert response.status_code == 200, response.text
    return [e["identity"] for e in response.json()["results"]]


def stored_replies(portal: PortalStack, job_id: int) -> list[tuple[str, bool]]:
    """(identity, verified) of every reply the job stored, read from the database."""
    rows = portal.query("SELECT identity, verified FROM jobs_nodereply WHERE job_id = %s", job_id)
    return [(identity, bool(verified)) for identity, verified in rows]


def run(portal: PortalStack, **payload: Any) -> dict[str, Any]:
    return portal.finished(portal.submit({"agent": "rpcutil", "action": "ping", **payload}))


def test_new_nodes_wait_for_an_admin_then_answer(manual_portal: PortalStack) -> None:
    portal = manual_portal
    assert eventually(lambda: len(pending(portal)) == NODES, 60), pending(portal)
    waiting = pending(portal)

    # Pending nodes are not counted, previewed, discovered or sent requests.
    assert portal.stored_nodes() == {}
    assert portal.api("GET", "/api/inventory/preview/?filter=").json()["count"] == 0
    # A job would reach no node: refused with the reason, nothing stored or sent.
    refused = portal.api("POST", "/api/jobs/", json={"agent": "rpcutil", "action": "ping"})
    assert refused.status_code == 400
    assert "no node matches" in refused.json()["errors"]["filter"]

    by_api, by_command, by_page, rejected = waiting[:3], waiting[3], waiting[4], waiting[5]
    for identity in by_api:
        response = portal.api("POST", f"/api/enrolment/{identity}/accept/")
        assert response.status_code == 200 and response.json()["state"] == "accepted"
    assert f"{by_command}: accepted" in portal.manage("nodes", "accept", by_command)
    portal.login(USER)
    page = portal.session.post(
        f"{portal.base_url}/enrolment/{by_page}/accept/",
        data={"csrfmiddlewaretoken": portal.session.cookies["csrftoken"], "next": "/enrolment/"},
        headers={"Referer": portal.base_url + "/enrolment/"},
        timeout=10,
    )
    assert f"{by_page} accepted: its key" in page.text
    assert portal.api("POST", f"/api/enrolment/{rejected}/reject/").json()["state"] == "rejected"

    accepted = {*by_api, by_command, by_page}
    assert set(portal.stored_nodes()) == accepted
    for discovery in ("inventory", "broadcast"):
        job = run(portal, options={"discovery": discovery})
        assert {r["identity"] for r in job["replies"]} == accepted, discovery
        assert all(verified for _, verified in stored_replies(portal, job["id"]))
        assert job["status"] == "completed"
    actors = portal.query("SELECT actor FROM audit_auditevent WHERE kind = 'node.accepted'")
    assert sorted(a for (a,) in actors) == [USER] * len(accepted)
    assert portal.query("SELECT actor FROM audit_auditevent WHERE kind = 'node.rejected'") == [
        (USER,)
    ]


class Forger(stomp.ConnectionListener):
    """An attacker on the broker: answers every rpcutil request as ``victim``, with its own key."""

    def __init__(self, conn: stomp.Connection, victim: str, key: SigningKey) -> None:
        self.conn, self.victim, self.key = conn, victim, key
        self.answered: queue.Queue[str] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        # The attacker reads the request (it cannot forge one, but it can read and answer).
        request = decode_request(json.loads(frame.body)["message"])
        forged = Reply.for_request(
            request, senderid=self.victim, statuscode=0, statusmsg="OK", data={"pong": -1}
        )
        self.conn.send(frame.headers["reply-to"], seal_reply(forged, self.key))
        self.answered.put(request.requestid)


@pytest.fixture
def token_portal(tmp_path: Path) -> Iterator[PortalStack]:
    """The embedded profile whose own nodes enrol by token, as the demo runs."""
    yield from embedded_stack(tmp_path, 4, users=(USER,))


def conflicts(portal: PortalStack) -> list[str]:
    results = portal.api("GET", "/api/enrolment/?conflict=1").json()["results"]
    return [e["identity"] for e in results]


def test_a_forged_identity_cannot_speak_for_an_accepted_node(token_portal: PortalStack) -> None:
    """The attack that opened this work: a client with no credentials re-registers an
    accepted node under its own key and answers the next job as that node."""
    portal = token_portal
    nodes = portal.stored_nodes()
    victim = sorted(nodes)[0]
    attacker = SigningKey.generate()
    conn = connect(portal.env["STOMP_BROKERS"], None, None)
    forger = Forger(conn, victim, attacker)
    try:
        forged = Registration(
            identity=victim, collectives=["mcollective"], facts={"customer": "evil"},
            classes=[], agents=["rpcutil"], msgtime=time.time() + 1,
            public_key=attacker.public_pem(),
        )  # fmt: skip
        conn.send(registration_queue("mcollective"), seal_registration(forged, attacker))
        assert eventually(lambda: conflicts(portal) == [victim], 30)
        conn.set_listener("forger", forger)
        conn.subscribe(broadcast_topic("mcollective", "rpcutil"), id="forger", ack="auto")
        time.sleep(0.5)  # let the subscription settle on the embedded broker

        job = run(portal, filter="customer=" + str(nodes[victim]["customer"]))
        assert forger.answered.get(timeout=10)
    finally:
        conn.disconnect()
    # The inventory kept the victim's facts and key; its stored answer is its own.
    assert portal.stored_nodes()[victim] == nodes[victim]
    victim_reply = next(r for r in job["replies"] if r["identity"] == victim)
    assert victim_reply["data"]["pong"] != -1
    assert dict(stored_replies(portal, job["id"]))[victim]
    assert job["dropped"] >= 1
    events = portal.query(
        "SELECT actor, summary FROM audit_auditevent WHERE kind = 'node.key_conflict'"
    )
    pinned = _pinned(portal, victim)
    assert events == [
        ("", f"{victim}: registration signed by key {attacker.key_id}, not the trusted {pinned}")
    ]


def _pinned(portal: PortalStack, identity: str) -> str:
    rows = portal.query("SELECT key_id FROM inventory_enrolment WHERE identity = %s", identity)
    return str(rows[0][0])
