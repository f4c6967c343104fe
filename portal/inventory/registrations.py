"""The registration consumer: nodes' registrations from the broker into the inventory.

One long-running process (``manage.py consume_registrations``). stomp.py's receiver thread
only opens the seal, decodes and queues; the consumer's own thread buffers and writes, so
every database write happens on one thread with one connection.

A registration must be sealed by the key it carries and name a host-name-safe identity, else
it is refused here; whether the key is trusted for the identity is decided when the batch is
written (``services.admit_registrations``: enrolment). Every refusal is counted by reason,
logged once with its reason, and never changes the inventory; each flush adds its refusals to
``RefusedRegistrations`` and writes one audit event for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import stomp
from django.db import DatabaseError, DataError, IntegrityError, close_old_connections

from agents.protocol import (
    HEADER_BROKER_SENDER,
    BrokerUnavailable,
    IdentityError,
    ProtocolError,
    SubscriptionConfirmer,
    connect,
    parse_brokers,
    registration_queue,
)
from agents.protocol.security import SignatureError, UnsignedMessage, open_registration
from portal.broker.gateway import BrokerSettings, sent_as_claimed
from portal.inventory.services import (
    Admission,
    SealedRegistration,
    admit_registrations,
    count_refusals,
)

logger = logging.getLogger(__name__)

READY_LINE = "registration consumer ready"
FLUSH_INTERVAL = 1.0
FLUSH_MESSAGES = 500
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
# How often a running consumer logs its counters: with several consumers on one queue, each
# one's line says how much of the fleet's registrations it takes.
STATS_INTERVAL = 60.0


@dataclass
class ConsumerStats:
    """Counters for the log and the tests; ``refused`` by reason (see ``refusal_reason``)."""

    received: int = 0
    recorded: int = 0
    pending: int = 0
    auto_accepted: int = 0
    dropped: int = 0
    flushes: int = 0
    connects: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def malformed(self) -> int:
        """Registrations that were not a well-formed envelope at all."""
        return self.refused["malformed"]

    def summary(self) -> str:
        """The counters in one line, for the periodic log line and the one at exit."""
        refused = ", ".join(f"{n} {why}" for why, n in sorted(self.refused.items())) or "none"
        return (
            f"{self.received} received, {self.malformed} malformed, {self.recorded} nodes "
            f"written in {self.flushes} flushes, {self.pending} pending, "
            f"{self.auto_accepted} auto-accepted; refused: {refused}"
        )


# What each refusal made at admission (enrolment) means, for the counters' last detail.
ADMISSION_REFUSALS = {
    "key_conflict": "signed by another key than the one trusted for the identity",
    "rejected": "the identity's key was rejected by an admin",
    "revoked": "the identity was revoked by an admin",
    "replayed": "older than the registration already recorded",
    "future": "stamped too far ahead of the portal's clock",
    "too_many_pending": "too many identities waiting for enrolment",
}


def refusal_reason(exc: ProtocolError) -> str:
    """The counter a registration refused at the door moves."""
    if isinstance(exc, UnsignedMessage):
        return "unsigned"
    if isinstance(exc, SignatureError):
        return "bad_signature"
    if isinstance(exc, IdentityError):
        return "bad_identity"
    return "malformed"


class _RegistrationListener(stomp.ConnectionListener):
    """Runs on stomp.py's receiver thread: opens the seal, decodes, queues; never raises."""

    def __init__(self, consumer: RegistrationConsumer) -> None:
        self.consumer = consumer

    def on_message(self, frame: Any) -> None:
        try:
            registration, kid = open_registration(frame.body)
        except ProtocolError as exc:
            self.consumer.refuse(refusal_reason(exc), "", str(exc))
            return
        sender = frame.headers.get(HEADER_BROKER_SENDER)
        if not sent_as_claimed(sender, registration.identity):
            self.consumer.refuse(
                "sender_mismatch",
                registration.identity,
                f"claims {registration.identity} but the broker says {sender!r} sent it",
            )
            return
        self.consumer.stats.received += 1
        self.consumer.inbox.put(SealedRegistration(registration, kid))

    def on_error(self, frame: Any) -> None:
        logger.error("broker sent an ERROR frame: %s", frame.headers.get("message") or frame.body)

    def on_disconnected(self) -> None:
        self.consumer.wake()


class RegistrationConsumer:
    """Subscribes to the registration queue and records what arrives, until ``stop()``.

    Guarantees: a malformed frame is logged and counted, never fatal; registrations are
    written every ``flush_interval`` seconds or ``flush_messages`` messages (newest per node);
    a lost broker is reconnected with back-off (0.5 s doubling to 30 s) while the buffer is
    kept; a database outage keeps the buffer for the next flush; ``on_ready`` runs once, after
    the first subscription is confirmed by the broker.
    """

    def __init__(
        self,
        config: BrokerSettings,
        *,
        on_ready: Callable[[], None] | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        flush_messages: int = FLUSH_MESSAGES,
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        self.config = config
        self.stats_interval = stats_interval
        self._next_stats = time.monotonic() + stats_interval
        self.on_ready = on_ready
        self.flush_interval = flush_interval
        self.flush_messages = flush_messages
        self.stats = ConsumerStats()
        self.inbox: queue.Queue[SealedRegistration | None] = queue.Queue()
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._pending: dict[str, SealedRegistration] = {}
        self._pending_messages = 0
        # Refusals since the last flush, by reason, with the last (identity, detail) of each;
        # the listener thread adds, the consumer thread takes (under the lock).
        self._refusals_lock = threading.Lock()
        self._refused: Counter[str] = Counter()
        self._samples: dict[str, tuple[str, str]] = {}
        self._confirmer = SubscriptionConfirmer()
        self._connection: stomp.Connection | None = None

    def refuse(self, reason: str, identity: str, detail: str) -> None:
        """Count one refused registration; logged at WARNING the first time a reason is seen
        in a flush and at DEBUG after, so a flood writes one line a second, not one a message."""
        with self._refusals_lock:
            first = reason not in self._refused
            self._refused[reason] += 1
            self._samples[reason] = (identity, detail)
            self.stats.refused[reason] += 1
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "refused a registration (%s): %s", reason, detail)

    def stop(self) -> None:
        """Ask ``run()`` to flush what it has, disconnect and return (any thread, signal-safe)."""
        self._stopping.set()
        self.wake()

    def wake(self) -> None:
        """Interrupt the wait for the next message (the connection dropped, or stop)."""
        self.inbox.put(None)

    def run(self) -> None:
        """Consume until ``stop()``; returns after the last flush."""
        parse_brokers(self.config.brokers)  # a bad spec is a configuration error: fail now
        backoff = BACKOFF_INITIAL
        try:
            while not self._stopping.is_set():
                try:
                    self._connect()
                except BrokerUnavailable as exc:
                    logger.warning("%s; retrying in %.1f s", exc, backoff)
                    self._consume_until(time.monotonic() + backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_INITIAL
                if not self.ready.is_set():
                    self.ready.set()
                    if self.on_ready is not None:
                        self.on_ready()
                self._consume_until(None)
                if not self._stopping.is_set():
                    logger.warning("lost the broker connection; reconnecting")
        finally:
            self._disconnect()
            self._flush()
            close_old_connections()

    def _connect(self) -> None:
        self._disconnect()
        conn = connect(
            self.config.brokers,
            self.config.login or None,
            self.config.passcode or None,
            timeout=self.config.connect_timeout,
            tls=self.config.tls,
            listeners={
                "registrations": _RegistrationListener(self),
                "confirm": self._confirmer,
            },
        )
        self._connection = conn
        destination = registration_queue(self.config.collective)
        # ack=auto: a consumer killed mid-batch loses what it buffered (at most one flush
        # interval, FLUSH_MESSAGES at most) and what the broker had dispatched to it; each of
        # those nodes registers again within its register interval, and until then its
        # inventory row is only that much older. Client ack after the flush would lose nothing,
        # but coilmq hands a client-ack subscriber one message at a time until it acks (one
        # registration per flush), and on ActiveMQ the unacked batch comes back after a
        # reconnect while the buffer still holds it. The queue already makes each
        # registration one consumer's, which is what running several consumers needs.
        conn.subscribe(destination=destination, id="registrations", ack="auto")
        self._confirmer.confirm(conn, self.config.connect_timeout, "the registration subscription")
        self.stats.connects += 1
        logger.info("subscribed to %s", destination)

    def _connected(self) -> bool:
        return self._connection is not None and self._connection.is_connected()

    def _disconnect(self) -> None:
        conn, self._connection = self._connection, None
        if conn is None:
            return
        try:
            if conn.is_connected():
                conn.disconnect()
        except (OSError, stomp.exception.StompException):
            logger.debug("disconnect failed; the connection was already gone")
        # Our reconnect loop decides when to try again, not stomp.py's.
        conn.transport.running = False

    def _consume_until(self, deadline: float | None) -> None:
        """Take messages and flush on time or size until the deadline, a drop, or stop."""
        next_flush = time.monotonic() + self.flush_interval
        while not self._stopping.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if deadline is None and (
                self._connection is None or not self._connection.is_connected()
            ):
                return
            if now >= next_flush or self._pending_messages >= self.flush_messages:
                self._flush()
                next_flush = time.monotonic() + self.flush_interval
            if now >= self._next_stats:
                logger.info("registration consumer stats: %s", self.stats.summary())
                self._next_stats = now + self.stats_interval
            wait = next_flush - now if deadline is None else min(next_flush, deadline) - now
            try:
                item = self.inbox.get(timeout=max(wait, 0.0))
            except queue.Empty:
                continue
            if item is not None:
                self._add(item)

    def _add(self, item: SealedRegistration) -> None:
        identity = item.registration.identity
        seen = self._pending.get(identity)
        if seen is None or item.registration.msgtime >= seen.registration.msgtime:
            self._pending[identity] = item
        self._pending_messages += 1

    def _flush(self) -> None:
        while True:  # take what stomp.py queued since the last wait
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._add(item)
        close_old_connections()
        if self._pending:
            batch = list(self._pending.values())
            try:
                admission = admit_registrations(batch)
            except (DataError, IntegrityError) as exc:
                # One bad registration (say, text PostgreSQL cannot store) must not block the rest.
                logger.warning(
                    "batch of %d registrations refused (%s); writing one by one", len(batch), exc
                )
                self._admit_one_by_one(batch)
            except DatabaseError as exc:
                logger.error("could not record %d registrations, keeping them: %s", len(batch), exc)
                return
            else:
                self._tally(admission)
            self.stats.flushes += 1
            self._pending.clear()
            self._pending_messages = 0
        self._write_refusals()

    def _tally(self, admission: Admission) -> None:
        self.stats.recorded += admission.recorded
        self.stats.pending += admission.pending
        self.stats.auto_accepted += admission.auto_accepted
        if admission.refused:
            with self._refusals_lock:
                for reason, count in admission.refused.items():
                    self._refused[reason] += count
                    self.stats.refused[reason] += count
                    identity = admission.last.get(reason, "")
                    self._samples[reason] = (identity, ADMISSION_REFUSALS.get(reason, ""))

    def _admit_one_by_one(self, batch: list[SealedRegistration]) -> None:
        for item in batch:
            try:
                self._tally(admit_registrations([item]))
            except (DataError, IntegrityError) as exc:
                self.stats.dropped += 1
                logger.warning(
                    "dropped the registration of %r: %s", item.registration.identity, exc
                )

    def _write_refusals(self) -> None:
        with self._refusals_lock:
            refused, samples = self._refused, self._samples
            self._refused, self._samples = Counter(), {}
        if not refused:
            return
        try:
            count_refusals(refused, samples)
        except DatabaseError as exc:
            logger.error(
                "could not record %d refused registrations: %s", sum(refused.values()), exc
            )
            with self._refusals_lock:
                self._refused.update(refused)
                for reason, sample in samples.items():
                    self._samples.setdefault(reason, sample)
