"""The portal's STOMP gateway: publish requests to the NOC broker and collect the replies.

No Django models here: the jobs app decides what to send and what to keep; this module only
speaks the wire protocol (``agents.protocol``) to the broker network.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stomp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from agents.protocol import (
    CONTENT_TYPE_JSON,
    HEADER_BROKER_SENDER,
    BrokerUnavailable,
    ProtocolError,
    Reply,
    Request,
    broadcast_topic,
    connect,
    encode,
    parse_brokers,
    reply_queue,
    request_headers,
)
from agents.protocol.security import (
    SigningKey,
    TrustedKeys,
    load_public_key,
    open_reply,
    seal_request,
)
from agents.protocol.transport import TLSConfig

logger = logging.getLogger(__name__)

__all__ = ["BrokerGateway", "BrokerSettings", "BrokerUnavailable", "GatewayStats"]


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how the portal connects: a failover list of brokers and its credentials."""

    brokers: str
    login: str
    passcode: str
    collective: str
    connect_timeout: float = 5.0
    signing_key: str | None = None
    tls: TLSConfig | None = None  # None: plain STOMP

    @classmethod
    def from_django(cls) -> BrokerSettings:
        return cls(
            brokers=settings.STOMP_BROKERS,
            login=settings.STOMP_LOGIN,
            passcode=settings.STOMP_PASSCODE,
            collective=settings.SWITCHBOARD_COLLECTIVE,
            connect_timeout=settings.SWITCHBOARD_CONNECT_TIMEOUT,
            signing_key=str(settings.SWITCHBOARD_SIGNING_KEY),
            tls=tls_from_django(),
        )


def tls_from_django() -> TLSConfig | None:
    """STOMP_TLS_CA, STOMP_TLS_CERT, STOMP_TLS_KEY as a TLSConfig; None when none is set."""
    try:
        return TLSConfig.from_files(
            settings.STOMP_TLS_CA, settings.STOMP_TLS_CERT, settings.STOMP_TLS_KEY
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"STOMP_TLS_CA, STOMP_TLS_CERT, STOMP_TLS_KEY: {exc}") from exc


@functools.cache
def portal_signing_key(path: str) -> SigningKey:
    """The portal's key, read (or created) once per process."""
    return SigningKey.load_or_create(path)


@dataclass(frozen=True)
class ReceivedReply:
    """A reply as it came off the wire, with what is needed to check who signed it."""

    reply: Reply
    signer: str | None = None
    signed: bytes | None = None
    signature: bytes | None = None
    # Who the broker says sent it (its JMSXUserID stamp, with per-node logins), if it says.
    sender: str | None = None
    # The broker's message-id, acknowledged once the reply is stored (``BrokerGateway.settle``).
    message_id: str = ""

    def signed_by(self, public_key: Ed25519PublicKey) -> bool:
        """True if the reply carries a valid signature by this (registered) public key."""
        if self.signer is None or self.signed is None or self.signature is None:
            return False
        try:
            TrustedKeys([public_key]).verify(self.signer, self.signed, self.signature)
        except ProtocolError:
            return False
        return True


def sent_as_claimed(sender: str | None, identity: str) -> bool:
    """Whether the broker's stamp lets a message claiming ``identity`` through: always while
    ``SWITCHBOARD_REQUIRE_BROKER_IDENTITY`` is off; with it on, only when the broker says the
    node's own login sent it (the registration consumer and the reply collector ask this)."""
    return not settings.SWITCHBOARD_REQUIRE_BROKER_IDENTITY or sender == identity


def load_registered_keys(pems: dict[str, str]) -> dict[str, Ed25519PublicKey]:
    """Identity -> public key, from the PEMs nodes registered; unreadable ones are skipped."""
    keys = {}
    for identity, pem in pems.items():
        try:
            keys[identity] = load_public_key(pem)
        except ValueError:
            logger.warning("node %s registered an unreadable public key; ignored", identity)
    return keys


@dataclass
class GatewayStats:
    """What the reply listener dropped, and why, for the job's log and the operator."""

    malformed: int = 0
    foreign: int = 0

    @property
    def dropped(self) -> int:
        """Every reply the gateway dropped before a collector saw it."""
        return self.malformed + self.foreign


class _ReplyListener(stomp.ConnectionListener):
    """Decodes frames on stomp.py's receiver thread and hands replies to the collector."""

    def __init__(self, inbox: queue.Queue[ReceivedReply], stats: GatewayStats) -> None:
        self.inbox = inbox
        self.stats = stats

    def on_message(self, frame: Any) -> None:
        try:
            received = ReceivedReply(
                *open_reply(frame.body),
                sender=frame.headers.get(HEADER_BROKER_SENDER),
                message_id=frame.headers.get("message-id", ""),
            )
        except ProtocolError as exc:
            self.stats.malformed += 1
            logger.warning("dropped a malformed reply: %s", exc)
            return
        self.inbox.put(received)

    def on_error(self, frame: Any) -> None:
        message = frame.headers.get("message", "") or frame.body
        logger.error("broker sent an ERROR frame: %s", message)


class _ServerName(stomp.ConnectionListener):
    """Keeps the ``server`` header of the broker's CONNECTED frame (e.g. ``ActiveMQ/5.17.6``).

    stomp.py wakes the connecting thread before it calls the listeners, so ``connect`` can
    return before ``on_connected`` ran: ``wait`` is how the reader knows it has.
    """

    def __init__(self) -> None:
        self.name = ""
        self._seen = threading.Event()

    def on_connected(self, frame: Any) -> None:
        self.name = frame.headers.get("server", "")
        self._seen.set()

    def wait(self, timeout: float) -> str:
        """The server's name once the CONNECTED frame was handled ("" if not within timeout)."""
        self._seen.wait(timeout)
        return self.name


REPLY_SUBSCRIPTION = "replies"
# Replies ActiveMQ may hand out before the portal acknowledges them: about two flush intervals
# of replies at the fastest rate measured (docs/performance.md), so acknowledging once per
# flush never stalls delivery.
REPLY_PREFETCH = 20000


def acknowledges_replies(server: str) -> bool:
    """Whether replies are taken with client acknowledgements on this broker.

    ActiveMQ keeps a reply until the portal acknowledges it, cumulatively, after storing it:
    a worker killed mid-job leaves its unstored replies in the queue for whoever takes the job
    over (``portal.jobs.runner.salvage_job``). The embedded broker (coilmq) hands a client-ack
    subscriber one message per acknowledgement, far too slow for a job's replies, so there the
    broker forgets a reply once sent; it runs in the demo's own process tree anyway.
    """
    return server.startswith("ActiveMQ")


def _client_id() -> str:
    """A reply-queue suffix unique to this process and call, as MCollective's ``<client>_<pid>``."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class BrokerGateway:
    """One STOMP session with a private reply queue, used as a context manager.

    Entering connects (raising ``BrokerUnavailable`` with a message for the operator within
    ``connect_timeout``) and subscribes the reply queue before anything is published, so no reply
    can arrive before someone listens for it.
    """

    def __init__(
        self, config: BrokerSettings, senderid: str | None = None, reply_to: str | None = None
    ) -> None:
        """``reply_to``: read an existing reply queue (a job taken over from a dead runner)
        instead of a new private one."""
        self.config = config
        self.senderid = senderid or socket.gethostname()
        self.reply_to = reply_to or reply_queue(config.collective, _client_id())
        self.acknowledging = False
        self._server = _ServerName()
        self._taken = ""  # message-id of the newest reply handed to the caller (or dropped)
        self._acked = ""
        self.stats = GatewayStats()
        self._inbox: queue.Queue[ReceivedReply] = queue.Queue()
        self._key = portal_signing_key(config.signing_key) if config.signing_key else None
        self._listener = _ReplyListener(self._inbox, self.stats)
        self._connection: stomp.Connection | None = None

    def __enter__(self) -> BrokerGateway:
        brokers = parse_brokers(self.config.brokers)
        self._connection = connect(
            brokers,
            self.config.login,
            self.config.passcode,
            timeout=self.config.connect_timeout,
            tls=self.config.tls,
            listeners={"server": self._server},
        )
        self._connection.set_listener("replies", self._listener)
        self.acknowledging = acknowledges_replies(self._server.wait(self.config.connect_timeout))
        if self.acknowledging:
            self._connection.subscribe(
                destination=self.reply_to,
                id=REPLY_SUBSCRIPTION,
                ack="client",
                headers={"activemq.prefetchSize": str(REPLY_PREFETCH)},
            )
        else:
            self._connection.subscribe(destination=self.reply_to, id=REPLY_SUBSCRIPTION, ack="auto")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._connection is not None and self._connection.is_connected():
            try:
                self._connection.disconnect()
            except (OSError, stomp.exception.StompException):
                logger.debug("disconnect failed; the connection was already gone")
        self._connection = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_connected()

    def new_request(
        self,
        *,
        agent: str,
        action: str,
        data: dict[str, Any],
        filter: dict[str, Any],
        callerid: str,
        ttl: int,
        roles: list[str] | None = None,
    ) -> Request:
        """A request stamped now, from this portal, for this gateway's collective."""
        return Request.new(
            senderid=self.senderid,
            callerid=callerid,
            collective=self.config.collective,
            agent=agent,
            action=action,
            data=data,
            filter=filter,
            ttl=ttl,
            roles=roles,
        )

    def publish(self, request: Request) -> None:
        """Broadcast the request on its agent's topic; every node checks the filter itself."""
        if self._connection is None or not self._connection.is_connected():
            raise BrokerUnavailable(f"lost the connection to {self.config.brokers}")
        self._connection.send(
            destination=broadcast_topic(request.collective, request.agent),
            # Signed whenever the portal has a key; nodes that require signatures drop the rest.
            body=seal_request(request, self._key) if self._key else encode(request),
            headers=request_headers(self.reply_to, request.msgtime, request.ttl),
            content_type=CONTENT_TYPE_JSON,
        )

    def settle(self) -> None:
        """Acknowledge every reply handed out so far (stored or deliberately dropped by now).

        One cumulative ACK per call ("client" mode); a no-op where replies are not
        acknowledged or nothing new was handed out.
        """
        if not self.acknowledging or self._taken == self._acked or self._connection is None:
            return
        try:
            self._connection.ack(self._taken, REPLY_SUBSCRIPTION)
        except (OSError, stomp.exception.StompException) as exc:
            # Unacknowledged replies are redelivered to the next reader of the queue, where
            # the job keeps one reply per node: nothing is lost or stored twice.
            logger.warning("could not acknowledge replies up to %s: %s", self._taken, exc)
            return
        self._acked = self._taken

    def replies(
        self, requestid: str, deadline: float, poll: float = 0.1
    ) -> Iterator[ReceivedReply | None]:
        """Yield replies to request ``requestid`` until ``deadline`` (``time.monotonic()``).

        Yields ``None`` at least every ``poll`` seconds while waiting, so the caller can flush
        what it has and decide to stop early (e.g. every discovered node has answered).
        Replies to other requests (late answers to an earlier one) are counted and dropped.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self.connected:
                raise BrokerUnavailable(
                    f"lost the connection to {self.config.brokers} while waiting for replies"
                )
            try:
                received = self._inbox.get(timeout=min(poll, remaining))
            except queue.Empty:
                yield None
                continue
            self._taken = received.message_id or self._taken
            if received.reply.requestid != requestid:
                # A late answer to an earlier request of this gateway (a batch past its
                # timeout, a discovery ping) or a reply sent to the wrong queue: never the
                # answer to this request, so never stored as one.
                self.stats.foreign += 1
                # One line per reply at DEBUG: after a timed-out batch there can be thousands;
                # the job's runner logs how many at WARNING.
                logger.debug(
                    "dropped a reply from %s to request %s while collecting request %s",
                    received.reply.senderid,
                    received.reply.requestid,
                    requestid,
                )
                continue
            yield received

    def discover(
        self,
        filter: dict[str, Any],
        callerid: str,
        timeout: float,
        ttl: int,
        roles: list[str] | None = None,
    ) -> dict[str, ReceivedReply]:
        """Broadcast discovery: ping every node with the filter; who answered in time, with
        the answer (the caller checks who may be trusted)."""
        request = self.new_request(
            agent="rpcutil",
            action="ping",
            data={},
            filter=filter,
            callerid=callerid,
            ttl=ttl,
            roles=roles,
        )
        self.publish(request)
        found: dict[str, ReceivedReply] = {}
        for received in self.replies(request.requestid, time.monotonic() + timeout):
            if received is not None:
                found.setdefault(received.reply.senderid, received)
        self.settle()
        return found
