"""Talking to the broker network as the portal does, without a portal: for the tests that
check the brokers themselves (failover, TLS, sub-collectives, restarts). The network's ports
and ``scripts/brokers`` are in ``harness.activemq``."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import stomp

from agents.filters import Filter
from agents.protocol import Request, broadcast_topic, connect, reply_queue, request_headers
from agents.protocol.security import SigningKey, open_reply, seal_request
from agents.protocol.transport import TLSConfig


class Inbox(stomp.ConnectionListener):
    """Every message body and ERROR frame a connection receives, in order."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.bodies.put(frame.body)

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame.headers.get("message", ""))


def eventually(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """True as soon as ``check()`` is, False if it never was within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def publish_signed(
    conn: stomp.Connection, request: Request, key: SigningKey, reply_to: str
) -> None:
    """Broadcast ``request`` on its agent's topic, signed, with its replies to ``reply_to``."""
    conn.send(
        broadcast_topic(request.collective, request.agent),
        seal_request(request, key),
        headers=request_headers(reply_to, request.msgtime, request.ttl),
    )


def ping(
    broker: tuple[str, int],
    login: str,
    passcode: str,
    identity: str,
    key: SigningKey,
    *,
    tls: TLSConfig | None = None,
    timeout: float = 3.0,
) -> list[str]:
    """Publish a signed ``rpcutil ping`` for ``identity`` at ``broker``; who answered in time."""
    inbox = Inbox()
    conn = connect([broker], login, passcode, tls=tls, listeners={"inbox": inbox})
    try:
        reply_to = reply_queue("mcollective", f"ping_{time.monotonic_ns()}")
        conn.subscribe(reply_to, id="replies", ack="auto")
        request = Request.new(
            collective="mcollective",
            agent="rpcutil",
            action="ping",
            callerid="user=integration-test",
            filter=Filter(identity=[identity]),
        )
        publish_signed(conn, request, key, reply_to)
        try:
            return [open_reply(inbox.bodies.get(timeout=timeout))[0].senderid]
        except queue.Empty:
            return []
    finally:
        conn.disconnect()


# The STOMP header in which ActiveMQ hands a subscriber the user the sender logged in as
# (populateJMSXUserID on every broker; docs/tls.md "Per-node logins"). With a per-node
# certificate it is the node's identity, e.g. "node0001.a.example"; with the shared password
# login, "node". A client cannot set it: the broker overwrites it, and a bridge keeps the
# datacenter broker's stamp.
JMSX_USER_ID = "JMSXUserID"


class Frames(stomp.ConnectionListener):
    """Every MESSAGE (headers and body) and ERROR (its message header) a connection gets."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[dict[str, str], str]] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self.seen: list[tuple[dict[str, str], str]] = []

    def on_message(self, frame: Any) -> None:
        self.messages.put((dict(frame.headers), frame.body))

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame.headers.get("message", ""))

    def first(self, body: str, timeout: float) -> dict[str, str] | None:
        """The headers of the first message whose body is ``body`` within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for headers, seen_body in self.seen:
                if seen_body == body:
                    return headers
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self.seen.append(self.messages.get(timeout=left))
            except queue.Empty:
                return None
