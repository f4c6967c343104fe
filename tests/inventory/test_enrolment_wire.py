"""Registrations refused at the consumer, sent by a real client over a real broker.

An attacker on the broker (no credentials on the embedded broker; a node's shared login on
ActiveMQ) publishes what a node would not: unsigned, tampered and mis-signed registrations,
identities that are not host-name-safe, and a registration claiming an accepted node's identity
under another key. Each is refused, counted by reason, logged, and changes nothing in the
inventory.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.db import connection

from agents.protocol import Registration, connect, encode, registration_queue
from agents.protocol.security import SigningKey, enrolment_proof, seal_registration
from harness.activemq import (
    ACTIVEMQ_PORTS,
    brokers_dir,
    drain_registrations,
    network_description,
    require_network,
)
from harness.services import require_service
from portal.audit.models import AuditEvent
from portal.broker.gateway import BrokerSettings
from portal.core.embedded_broker import EmbeddedBroker
from portal.inventory.models import Enrolment, Node, RefusedRegistrations
from portal.inventory.registrations import RegistrationConsumer

NODE_A, NODE_B = "node0001.a.example", "node0002.a.example"  # scripts/make-dev-ca's own

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "wire-enrolment-token"
BAD_IDENTITIES = ["x/<b>y</b>", "a" * 300, "has space", "abc\u202eexe.example", "-leading"]


@dataclass
class Network:
    """Where the portal's consumer listens and where a client on a node's side publishes."""

    consumer: BrokerSettings
    publish_at: str
    login: str | None
    passcode: str | None


@pytest.fixture(params=["embedded", pytest.param("activemq", marks=pytest.mark.activemq)])
def network(request: pytest.FixtureRequest) -> Iterator[Network]:
    if request.param == "embedded":
        broker = EmbeddedBroker(port=0).start()
        try:
            yield Network(
                BrokerSettings(broker.address, "", "", "mcollective", connect_timeout=3.0),
                broker.address,
                None,
                None,
            )
        finally:
            broker.stop()
        return
    require_network()
    drain_registrations()  # what earlier tests left in the shared queue is not this test's
    noc = f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}"
    yield Network(
        BrokerSettings(noc, "portal", "portal-secret", "mcollective", connect_timeout=5.0),
        f"127.0.0.1:{ACTIVEMQ_PORTS['dc_a']}",
        "node",
        "node-secret",
    )


@pytest.fixture
def consumer(network: Network, settings) -> Iterator[RegistrationConsumer]:
    settings.SWITCHBOARD_AUTO_ACCEPT = ["token"]
    settings.SWITCHBOARD_ENROLMENT_TOKEN = TOKEN
    running = RegistrationConsumer(network.consumer, flush_interval=0.2)

    def run() -> None:
        try:
            running.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert running.ready.wait(15), "the consumer never subscribed"
    yield running
    running.stop()
    thread.join(15)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def registration(identity: str, key: SigningKey, token: str = "", **facts: str) -> Registration:
    return Registration(
        identity=identity,
        collectives=["mcollective"],
        facts=dict(facts),
        classes=["base"],
        agents=["rpcutil"],
        msgtime=time.time(),
        public_key=key.public_pem(),
        enrolment_proof=enrolment_proof(token, identity, key.key_id) if token else "",
    )


def sealed_for_any_identity(identity: str, key: SigningKey) -> str:
    """A correctly sealed registration whose identity the envelope would refuse to build:
    what a hand-written client could send."""
    good = json.loads(seal_registration(registration("placeholder", key), key))
    inner = json.loads(good["message"])
    inner["identity"] = identity
    message = json.dumps(inner, sort_keys=True, separators=(",", ":"))
    signature = base64.b64encode(key.sign(message.encode())).decode()
    return json.dumps({**good, "message": message, "signature": signature})


def test_every_forged_registration_is_refused_counted_and_changes_nothing(
    network: Network, consumer: RegistrationConsumer
) -> None:
    victim_key, attacker = SigningKey.generate(), SigningKey.generate()
    conn = connect(network.publish_at, network.login, network.passcode)
    queue = registration_queue("mcollective")
    try:
        # The real node enrols (auto-accept by token) and is in the inventory.
        enrol = registration("victim", victim_key, TOKEN, customer="acme")
        conn.send(queue, seal_registration(enrol, victim_key))
        wait_for(lambda: Node.objects.filter(identity="victim").exists())
        before = Node.objects.values_list("identity", "facts", "last_seen").get()

        conn.send(queue, encode(registration("victim", attacker, customer="evil")))  # unsigned
        tampered = json.loads(seal_registration(registration("victim", attacker), attacker))
        tampered["message"] = tampered["message"].replace('"facts":{}', '"facts":{"x":"y"}')
        conn.send(queue, json.dumps(tampered))  # bad signature
        other_signer = json.loads(seal_registration(registration("victim", attacker), attacker))
        other_signer["signer"] = victim_key.key_id
        conn.send(queue, json.dumps(other_signer))  # signer is not the key carried
        for identity in BAD_IDENTITIES:
            conn.send(queue, sealed_for_any_identity(identity, attacker))
        conn.send(queue, "{not json")
        # The forger's own key, the victim's name: a key conflict.
        forged = registration("victim", attacker, TOKEN, customer="evil")
        conn.send(queue, seal_registration(forged, attacker))

        expected = {
            "unsigned": 1,
            "bad_signature": 2,
            "bad_identity": len(BAD_IDENTITIES),
            "malformed": 1,
            "key_conflict": 1,
        }
        wait_for(lambda: dict(consumer.stats.refused) == expected)
        wait_for(
            lambda: dict(RefusedRegistrations.objects.values_list("reason", "count")) == expected
        )
    finally:
        conn.disconnect()

    assert Node.objects.values_list("identity", "facts", "last_seen").get() == before
    assert list(Enrolment.objects.values_list("identity", "state", "key_id")) == [
        ("victim", "accepted", victim_key.key_id)
    ]
    victim = Enrolment.objects.get()
    assert (victim.conflict_key_id, victim.conflict_count) == (attacker.key_id, 1)
    assert AuditEvent.objects.filter(kind="node.key_conflict").count() == 1
    refused_events = AuditEvent.objects.filter(kind="node.registrations_refused")
    assert sum(sum(e.data["counts"].values()) for e in refused_events) == sum(expected.values())


@pytest.mark.activemq
def test_with_per_node_logins_a_node_registers_only_as_itself(settings) -> None:
    """docs/tls.md, Per-node logins: the brokers stamp the login that sent each message; with
    SWITCHBOARD_REQUIRE_BROKER_IDENTITY a registration counts only under its sender's name."""
    require_network()
    description = network_description(brokers_dir())
    require_service(
        "per-node certificates on the ActiveMQ network",
        description is not None and description.has_nodes(NODE_A, NODE_B),
        "scripts/brokers up makes them (TLS on)",
    )
    assert description is not None
    node_a_login = description.nodes()[NODE_A]
    settings.SWITCHBOARD_AUTO_ACCEPT = ["token"]
    settings.SWITCHBOARD_ENROLMENT_TOKEN = TOKEN
    settings.SWITCHBOARD_REQUIRE_BROKER_IDENTITY = True
    drain_registrations()
    noc = f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}"
    running = RegistrationConsumer(
        BrokerSettings(noc, "portal", "portal-secret", "mcollective", connect_timeout=5.0),
        flush_interval=0.2,
    )
    thread = threading.Thread(target=lambda: (running.run(), connection.close()), daemon=True)
    thread.start()
    try:
        assert running.ready.wait(15)
        own = connect([description.stomp("dc_a")], None, None, tls=node_a_login)
        shared = connect(f"127.0.0.1:{ACTIVEMQ_PORTS['dc_a']}", "node", "node-secret")
        queue = registration_queue("mcollective")
        key_a, key_b = SigningKey.generate(), SigningKey.generate()
        try:
            own.send(queue, seal_registration(registration(NODE_A, key_a, TOKEN), key_a))
            # Node A's login speaking for node B; the shared login speaking for node A.
            own.send(queue, seal_registration(registration(NODE_B, key_b, TOKEN), key_b))
            shared.send(queue, seal_registration(registration(NODE_A, key_b, TOKEN), key_b))
            wait_for(lambda: running.stats.refused["sender_mismatch"] == 2)
            wait_for(lambda: Node.objects.filter(identity=NODE_A).exists())
        finally:
            own.disconnect()
            shared.disconnect()
    finally:
        running.stop()
        thread.join(15)
    assert list(Node.objects.values_list("identity", flat=True)) == [NODE_A]
    assert list(Enrolment.objects.values_list("identity", "key_id")) == [(NODE_A, key_a.key_id)]
    assert dict(running.stats.refused) == {"sender_mismatch": 2}
