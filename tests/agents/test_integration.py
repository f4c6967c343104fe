"""Real broker (coilmq), real simulated nodes, real STOMP frames."""

import base64
import contextlib
import json
import queue
import time

import pytest
import stomp

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Filter
from agents.protocol import (
    CONTENT_TYPE_JSON,
    MAX_MESSAGE_BYTES,
    BrokerUnavailable,
    Request,
    Status,
    broadcast_topic,
    connect,
    decode_registration,
    encode,
    registration_queue,
    reply_queue,
    request_headers,
)
from agents.protocol.security import (
    SECURE_REQUEST_PROTOCOL,
    SigningKey,
    TrustedKeys,
    open_reply,
    seal_request,
)
from agents.simulator import Simulator
from portal.core.embedded_broker import EmbeddedBroker

# The portal's key: every request below is signed with it unless a test says otherwise.
PORTAL_KEY = SigningKey.generate()
TRUSTED = TrustedKeys([PORTAL_KEY.public_key])


def decode_reply(body):
    """A node's reply (nodes seal their replies with their own key)."""
    return open_reply(body)[0]


def seal_text(text):
    """A sealed request around any inner text, to get garbage past the signature check."""
    signature = base64.b64encode(PORTAL_KEY.sign(text.encode())).decode()
    return json.dumps(
        {
            "protocol": SECURE_REQUEST_PROTOCOL,
            "signer": PORTAL_KEY.key_id,
            "message": text,
            "signature": signature,
        }
    )


pytestmark = pytest.mark.integration


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(frame.body)

    def drain(self, expected, timeout=5.0):
        """Bodies until ``expected`` arrived, then a short grace period for extras."""
        bodies = []
        deadline = time.monotonic() + timeout
        while len(bodies) < expected and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                bodies.append(self.frames.get(timeout=0.05))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                bodies.append(self.frames.get(timeout=0.05))
        return bodies


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="module")
def fleet(broker, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "portal.pub"
    key_file.write_text(PORTAL_KEY.public_pem())
    with Simulator(
        20, broker.address, seed=7, register_interval=0, trusted_keys=[str(key_file)]
    ) as sim:
        yield sim


@pytest.fixture
def client(broker):
    collector = Collector()
    conn = connect(broker.address, None, None, listeners={"collector": collector})
    name = f"test{time.monotonic_ns()}"
    dest = reply_queue("mcollective", name)
    conn.subscribe(dest, id=name, ack="auto", headers={"receipt": name})
    time.sleep(0.05)
    yield conn, collector, dest
    conn.disconnect()


def publish(conn, reply_to, agent="rpcutil", action="ping", body=None, **kwargs):
    request = Request.new(
        collective="mcollective", agent=agent, action=action, callerid="user=test", **kwargs
    )
    conn.send(
        broadcast_topic("mcollective", agent),
        seal_request(request, PORTAL_KEY) if body is None else body,
        content_type=CONTENT_TYPE_JSON,
        headers=request_headers(reply_to, request.msgtime, request.ttl),
    )
    return request


def test_exactly_matching_nodes_reply(fleet, client):
    conn, collector, dest = client
    flt = Filter.parse("(customer=acme or customer=globex) and not role=db")
    expected = sorted(n.identity for n in fleet.nodes if flt.matches(n))
    assert 0 < len(expected) < 20
    request = publish(conn, dest, filter=flt)
    replies = [decode_reply(b) for b in collector.drain(len(expected))]
    assert sorted(r.senderid for r in replies) == expected
    assert all(r.requestid == request.requestid for r in replies)
    assert all(r.statuscode == Status.OK and r.data == {"pong": request.msgtime} for r in replies)


def test_inventory_carries_each_nodes_facts(fleet, client):
    conn, collector, dest = client
    target = fleet.nodes[3]
    publish(conn, dest, action="inventory", filter=Filter(identity=[target.identity]))
    (reply,) = [decode_reply(b) for b in collector.drain(1)]
    assert reply.senderid == target.identity
    assert reply.data["facts"] == target.facts
    assert reply.data["classes"] == sorted(target.classes)


def test_garbage_frames_are_counted_and_the_node_keeps_serving(broker, client):
    conn, collector, dest = client
    config = NodeConfig(
        identity="garbage-node", brokers=[("127.0.0.1", broker.port)], register_interval=0
    )
    node = NodeDaemon(config, trusted_keys=TRUSTED)
    node.start()
    try:
        only_me = Filter(identity=["garbage-node"])
        good = json.loads(
            encode(
                Request.new(
                    collective="mcollective",
                    agent="rpcutil",
                    action="ping",
                    callerid="u",
                    filter=only_me,
                )
            )
        )
        wrong_protocol = dict(good, protocol="switchboard:request:9")
        bad_filter = dict(good, filter={"compound": "customer=>acme"})
        expired = dict(good, requestid="e" * 32, msgtime=time.time() - 120)
        tampered = json.loads(seal_text(json.dumps(good)))
        tampered["message"] = json.dumps(dict(good, action="inventory"))
        for body in (
            "not json",
            seal_text(json.dumps(wrong_protocol)),
            "x" * (MAX_MESSAGE_BYTES + 10),
            seal_text(json.dumps(bad_filter)),
            seal_text(json.dumps(expired)),
            json.dumps(dict(good, requestid="u" * 32)),  # unsigned
            json.dumps(tampered),  # signature no longer matches
        ):
            publish(conn, dest, body=body)
        request = publish(conn, dest, filter=only_me)
        publish(conn, dest, filter=Filter(identity=["someone-else"]))
        replies = [decode_reply(b) for b in collector.drain(1)]
        assert [(r.senderid, r.requestid) for r in replies] == [("garbage-node", request.requestid)]
        stats = node.stats()
        assert stats["invalid"] == 4
        assert stats["signature_refused"] == 2
        assert stats["ttl_expired"] == 1
        assert stats["filtered"] == 1
        assert stats["replies"] == 1
        assert stats["total"] == 9
    finally:
        node.stop()


def test_slow_action_does_not_block_other_requests(broker, client):
    conn, collector, dest = client
    config = NodeConfig(
        identity="slow-node", brokers=[("127.0.0.1", broker.port)], register_interval=0, workers=2
    )
    node = NodeDaemon(config, trusted_keys=TRUSTED)
    node.start()
    try:
        only_me = Filter(identity=["slow-node"])
        publish(conn, dest, agent="echo", action="sleep", data={"seconds": 1.5}, filter=only_me)
        ping = publish(conn, dest, filter=only_me)
        first = decode_reply(collector.drain(1, timeout=1.0)[0])
        assert first.requestid == ping.requestid
    finally:
        node.stop()


def test_registration_is_published():
    # A broker of its own: the registration queue keeps what the module's fleet sent to it
    # with no consumer, and would hand that backlog to this subscriber first.
    with EmbeddedBroker() as broker:
        collector = Collector()
        conn = connect(broker.address, None, None, listeners={"c": collector})
        conn.subscribe(registration_queue("mcollective"), id="reg", ack="auto")
        time.sleep(0.1)
        node = NodeDaemon(
            NodeConfig(
                identity="reg-node",
                facts={"a": 1},
                brokers=[("127.0.0.1", broker.port)],
                register_interval=0,
            )
        )
        node.start()
        try:
            regs = [decode_registration(b) for b in collector.drain(1)]
            assert [(r.identity, r.facts, r.agents) for r in regs] == [
                ("reg-node", {"a": 1}, sorted(node.agents))
            ]
        finally:
            node.stop()
            conn.disconnect()


def test_node_reconnects_and_resubscribes_after_broker_restart():
    broker = EmbeddedBroker().start()
    port = broker.port
    node = NodeDaemon(
        NodeConfig(identity="phoenix", brokers=[("127.0.0.1", port)], register_interval=0),
        trusted_keys=TRUSTED,
    )
    node.start()
    try:
        broker.stop()
        deadline = time.monotonic() + 5
        while node.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker = EmbeddedBroker(port=port).start()
        deadline = time.monotonic() + 10
        while node.stats()["reconnects"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.stats()["reconnects"] == 1
        collector = Collector()
        conn = connect(broker.address, None, None, listeners={"c": collector})
        dest = reply_queue("mcollective", "phoenix-test")
        conn.subscribe(dest, id="r", ack="auto")
        time.sleep(0.05)
        publish(conn, dest)
        assert [decode_reply(b).senderid for b in collector.drain(1)] == ["phoenix"]
        conn.disconnect()
    finally:
        node.stop()
        broker.stop()


def test_connect_to_dead_broker_fails_fast():
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127.0.0.1:9 within 1 s \(127.0.0.1:9: "):
        connect("127.0.0.1:9", None, None, timeout=1.0)
    assert time.monotonic() - start < 3


def test_login_is_enforced():
    with EmbeddedBroker(login="node", passcode="s3cret") as broker:
        connect(broker.address, "node", "s3cret").disconnect()
        with pytest.raises(BrokerUnavailable, match="refused"):
            connect(broker.address, "node", "wrong", timeout=2.0)
