"""A node refuses, over a real broker, what tests/agents/test_strict_node.py refuses in-process.

A client that holds the portal's key publishes hand-made sealed requests through a real
broker: on another agent's topic, another collective's topic, without a reply-to, with a huge
ttl, with an ancient msgtime, with a lone surrogate. Each one must move exactly its counter on
the node (read in-process, and once through rpcutil daemon_stats over the wire), and no reply
may arrive. Twice: on the embedded coilmq broker (node and client on one broker), and on the
ActiveMQ network (the client at the NOC, the node at dc_a's broker, across the bridges).

Every request names this node in its identity filter, so another node on the shared ActiveMQ
network that does accept one only counts it as filtered and runs nothing.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import stomp

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Filter
from agents.protocol import (
    HEADER_REPLY_TO,
    Reply,
    Request,
    Status,
    broadcast_topic,
    connect,
    reply_queue,
)
from agents.protocol.security import SigningKey, TrustedKeys, open_reply, seal_request
from harness.activemq import DC_A, NOC, require_network
from portal.core.embedded_broker import EmbeddedBroker
from tests.integration.wire import Inbox, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PORTAL_KEY = SigningKey.generate()
MAX_TTL = 600
MAX_AGE = 900.0
# Counters that other tests' requests on the shared ActiveMQ network may move on this node
# too (their filters do not match it); every other counter must move exactly as expected.
BACKGROUND = frozenset({"total", "validated", "filtered"})


@dataclass
class Wire:
    """A node on a real broker and a client holding the portal's key, with its reply queue."""

    node: NodeDaemon
    client: stomp.Connection
    inbox: Inbox
    reply_to: str
    # How long a reply would take to come back: "no reply" means none within this.
    quiet: float
    # On the shared ActiveMQ network, where other tests' traffic reaches this node too.
    shared: bool

    def request(self, agent: str = "rpcutil", collective: str = "dc_a", **fields: Any) -> Request:
        action = {"rpcutil": "ping", "echo": "echo"}[agent]
        request = Request.new(
            collective=collective,
            agent=agent,
            action=action,
            callerid="user=refusals-test",
            data={"message": "hello"} if agent == "echo" else {},
            filter=Filter(identity=[self.node.identity]),
            ttl=60,
        )
        return replace(request, **fields)

    def publish(
        self,
        request: Request,
        *,
        destination: str | None = None,
        reply_to: str | None = "",
        body: str | None = None,
    ) -> None:
        """Send ``request`` sealed, by default on its own topic with this client's reply-to.

        No ``expires`` header: ActiveMQ drops a message past it, and an old request must
        reach the node to be refused there (an attacker replaying one would not set it).
        """
        headers = {}
        if reply_to is not None:
            headers[HEADER_REPLY_TO] = reply_to or self.reply_to
        self.client.send(
            destination or broadcast_topic(request.collective, request.agent),
            body if body is not None else seal_request(request, PORTAL_KEY),
            headers=headers,
        )

    def reply(self, timeout: float) -> Reply | None:
        try:
            return open_reply(self.inbox.bodies.get(timeout=timeout))[0]
        except queue.Empty:
            return None

    def moved(self, before: dict[str, int]) -> dict[str, int]:
        """The counters that changed since ``before``, by how much (on the shared network,
        leaving out those that others' traffic may move)."""
        after = self.node.stats()
        ignored = BACKGROUND if self.shared else frozenset()
        return {
            name: after[name] - before[name]
            for name in after
            if after[name] != before[name] and name not in ignored
        }

    def expect(self, counters: dict[str, int]) -> dict[str, int]:
        """What ``moved`` should say for a frame that moves ``counters`` besides total."""
        expected = {"total": 1, **counters}
        if self.shared:
            return {k: v for k, v in expected.items() if k not in BACKGROUND}
        return expected


def _round_trip(wire: Wire, agent: str, collective: str) -> None:
    """A request that passes gets its reply: the path works both ways, so that "no reply"
    below means refused, not lost. Retried while ActiveMQ's demand crosses the bridges."""
    for _ in range(10):
        request = wire.request(agent, collective)
        wire.publish(request)
        reply = wire.reply(timeout=3.0)
        if reply is not None:
            assert (reply.requestid, reply.statuscode) == (request.requestid, Status.OK)
            return
    pytest.fail(f"no reply to a good {agent} request in {collective}")


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("activemq", marks=pytest.mark.activemq)]
)
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    with contextlib.ExitStack() as stack:
        if request.param == "embedded":
            broker = stack.enter_context(EmbeddedBroker())
            node_at = client_at = [("127.0.0.1", broker.port)]
            node_login = client_login = (None, None)
            quiet, shared = 0.5, False
        else:
            require_network()
            node_at, client_at = [DC_A], [NOC]
            node_login, client_login = ("node", "node-secret"), ("portal", "portal-secret")
            quiet, shared = 2.0, True
        node = NodeDaemon(
            NodeConfig(
                identity=f"refusals-{request.param}-{time.monotonic_ns()}.example.net",
                backend="simulated",
                brokers=node_at,
                login=node_login[0],
                passcode=node_login[1],
                collectives=["mcollective", "dc_a"],
                register_interval=0,
                max_ttl=MAX_TTL,
                max_age=MAX_AGE,
            ),
            trusted_keys=TrustedKeys([PORTAL_KEY.public_key]),
        )
        node.start(register_periodically=False)
        stack.callback(node.stop)
        inbox = Inbox()
        client = connect(client_at, *client_login, listeners={"inbox": inbox})
        stack.callback(client.disconnect)
        reply_to = reply_queue("dc_a", f"refusals_{time.monotonic_ns()}")
        client.subscribe(reply_to, id="replies", ack="auto")
        wire = Wire(node, client, inbox, reply_to, quiet, shared)
        for agent, collective in (
            ("rpcutil", "dc_a"),
            ("echo", "dc_a"),
            ("rpcutil", "mcollective"),
        ):
            _round_trip(wire, agent, collective)
        time.sleep(quiet)  # a late reply to a retried round trip is not one of the tests'
        while wire.reply(timeout=0) is not None:
            pass
        yield wire


def assert_refused(wire: Wire, counters: dict[str, int], **publish: Any) -> None:
    """Publish (``publish`` as for Wire.publish, plus ``request``): exactly ``counters`` move
    on the node, besides total, and no reply arrives."""
    before = wire.node.stats()
    expected = wire.expect(counters)
    wire.publish(publish.pop("request"), **publish)
    eventually(lambda: wire.moved(before) == expected, timeout=15, interval=0.05)
    assert wire.reply(timeout=wire.quiet) is None
    assert wire.moved(before) == expected


def test_a_request_on_another_agents_topic_is_refused(wire: Wire) -> None:
    request = wire.request("rpcutil", "dc_a")
    assert_refused(
        wire,
        {"unvalidated": 1, "wrong_destination": 1},
        request=request,
        destination=broadcast_topic("dc_a", "echo"),
    )


def test_a_sub_collective_request_on_the_main_collectives_topic_is_refused(wire: Wire) -> None:
    request = wire.request("rpcutil", "dc_a")
    assert_refused(
        wire,
        {"unvalidated": 1, "wrong_destination": 1},
        request=request,
        destination=broadcast_topic("mcollective", "rpcutil"),
    )


def test_a_request_without_reply_to_is_refused(wire: Wire) -> None:
    assert_refused(wire, {"validated": 1, "no_reply_to": 1}, request=wire.request(), reply_to=None)


@pytest.mark.parametrize("ttl", [MAX_TTL + 1, 10**400])
def test_a_ttl_over_max_ttl_is_refused(wire: Wire, ttl: int) -> None:
    assert_refused(wire, {"validated": 1, "ttl_too_long": 1}, request=wire.request(ttl=ttl))


def test_a_msgtime_older_than_max_age_is_refused(wire: Wire) -> None:
    request = wire.request(msgtime=time.time() - MAX_AGE - 60)
    assert_refused(wire, {"validated": 1, "too_old": 1}, request=request)


def test_a_lone_surrogate_is_invalid(wire: Wire) -> None:
    request = wire.request("echo", data={"message": "\ud800"})
    assert_refused(wire, {"unvalidated": 1, "invalid": 1}, request=request)


def test_a_fire_and_forget_request_runs_and_is_not_answered(wire: Wire) -> None:
    before = wire.node.stats()
    expected = wire.expect({"validated": 1, "passed": 1})
    wire.publish(wire.request("echo", reply_wanted=False), reply_to=None)
    eventually(lambda: wire.moved(before) == expected, timeout=15, interval=0.05)
    assert wire.reply(timeout=wire.quiet) is None
    assert wire.moved(before) == expected


def test_rpcutil_daemon_stats_reports_the_refusals(wire: Wire) -> None:
    assert_refused(wire, {"validated": 1, "ttl_too_long": 1}, request=wire.request(ttl=10**400))
    request = wire.request(action="daemon_stats")
    wire.publish(request)
    reply = wire.reply(timeout=15)
    assert reply is not None and reply.requestid == request.requestid
    assert reply.statuscode == Status.OK
    stats = wire.node.stats()
    for name in ("wrong_destination", "ttl_too_long", "too_old", "no_reply_to", "invalid"):
        assert reply.data[name] == stats[name], name
    assert reply.data["ttl_too_long"] >= 1
