"""A Channels layer whose groups span processes through the STOMP broker.

The embedded profile has no Redis, yet the Celery worker (one process) must reach browsers held
by the ASGI server (another process). Both already talk to the STOMP broker, so ``group_send``
publishes to a topic per group and every process with a member of that group subscribes to it.
Channels and groups stay in memory per process, as in ``InMemoryChannelLayer``; only group
messages cross processes. The production profile uses channels-redis instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import stomp
from channels.layers import InMemoryChannelLayer

from agents.protocol import (
    BrokerUnavailable,
    SubscriptionConfirmer,
    connect,
    format_brokers,
    parse_brokers,
)
from agents.protocol.transport import TLSConfig

logger = logging.getLogger(__name__)

GROUP_TOPIC_PREFIX = "/topic/switchboard.channels."
RETRY_AFTER_FAILURE = 5.0


def group_topic(group: str) -> str:
    """The STOMP topic that carries messages for one Channels group."""
    return GROUP_TOPIC_PREFIX + group


class _GroupListener(stomp.ConnectionListener):
    def __init__(self, layer: StompChannelLayer) -> None:
        self.layer = layer
        # Set once connected: an attempt that never connected has nothing to win back.
        self.established = False

    def on_message(self, frame: Any) -> None:
        self.layer._deliver_from_broker(frame.headers.get("destination", ""), frame.body)

    def on_disconnected(self) -> None:
        if self.established:
            self.layer._connection_lost()


class StompChannelLayer(InMemoryChannelLayer):
    """In-memory channels and groups, with ``group_send`` fanned out over STOMP topics."""

    def __init__(
        self,
        brokers: str = "127.0.0.1:61613",
        login: str = "",
        passcode: str = "",
        connect_timeout: float = 5.0,
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        **kwargs: Any,
    ) -> None:
        """``tls_*``: PEM files for the brokers' STOMP over TLS ports (as STOMP_TLS_*)."""
        super().__init__(**kwargs)
        self.brokers = parse_brokers(brokers)
        self.login = login
        self.passcode = passcode
        self.connect_timeout = connect_timeout
        self.tls = TLSConfig.from_files(tls_ca, tls_cert, tls_key)
        # Re-entrant: stomp.py may call on_disconnected from inside a connect attempt.
        self._lock = threading.RLock()
        # After a failed connect, publishing fails fast for a while instead of waiting for
        # the connect timeout on every frame.
        self._down_until = 0.0
        self._connection: stomp.Connection | None = None
        self._subscribed: set[str] = set()
        self._confirmer = SubscriptionConfirmer()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection ------------------------------------------------------------------------------
    def _ensure_connection(self) -> stomp.Connection:
        with self._lock:
            if self._connection is None or not self._connection.is_connected():
                if time.monotonic() < self._down_until:
                    raise BrokerUnavailable(f"{format_brokers(self.brokers)} was unreachable")
                listener = _GroupListener(self)
                try:
                    conn = connect(
                        self.brokers,
                        self.login,
                        self.passcode,
                        listeners={"channel-layer": listener, "confirm": self._confirmer},
                        tls=self.tls,
                        timeout=self.connect_timeout,
                    )
                except BrokerUnavailable:
                    self._down_until = time.monotonic() + RETRY_AFTER_FAILURE
                    raise
                listener.established = True
                self._connection = conn
                # A fresh connection has no subscriptions: take back those we had.
                for group in self._subscribed:
                    self._subscribe(conn, group)
            return self._connection

    def _connection_lost(self) -> None:
        """Forget the dead connection; if groups are watched, win them back in the background."""
        with self._lock:
            self._connection = None
            watching = bool(self._subscribed)
        if watching:
            threading.Thread(
                target=self._reconnect, name="channel-layer-reconnect", daemon=True
            ).start()

    def _reconnect(self) -> None:
        delay = 0.1
        while self._subscribed:
            try:
                self._ensure_connection()
                logger.info("channel layer reconnected to %s", self.brokers)
                return
            except BrokerUnavailable as exc:
                logger.warning("channel layer: %s; retrying in %.1f s", exc, delay)
                self._down_until = 0.0  # this loop paces its own retries
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    @staticmethod
    def _subscribe(conn: stomp.Connection, group: str) -> None:
        conn.subscribe(destination=group_topic(group), id=group, ack="auto")

    # -- layer API -------------------------------------------------------------------------------
    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._loop = asyncio.get_running_loop()
        if group not in self._subscribed:
            conn = await asyncio.to_thread(self._ensure_connection)
            with self._lock:
                if group in self._subscribed:
                    return
                self._subscribed.add(group)
                self._subscribe(conn, group)
            # The consumer sends its snapshot once this returns: a frame published after the
            # snapshot was read must find the subscription in place, so wait for the broker.
            try:
                await asyncio.to_thread(
                    self._confirmer.confirm, conn, self.connect_timeout, f"the group {group}"
                )
            except BrokerUnavailable as exc:
                # The browser's resume (by reply id) still fills any gap on its next connect.
                logger.warning("channel layer: %s", exc)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        if group not in self.groups and group in self._subscribed:
            with self._lock:
                self._subscribed.discard(group)
                if self._connection is not None and self._connection.is_connected():
                    # coilmq wants the destination too, although STOMP 1.1 needs only the id.
                    self._connection.unsubscribe(
                        id=group, headers={"destination": group_topic(group)}
                    )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Publish to the group's topic; each process delivers to its own members."""
        self.require_valid_group_name(group)
        body = json.dumps(message, separators=(",", ":"))
        await asyncio.to_thread(self._publish, group, body)

    def _publish(self, group: str, body: str) -> None:
        conn = self._ensure_connection()
        conn.send(destination=group_topic(group), body=body, content_type="application/json")

    def _deliver_from_broker(self, destination: str, body: str) -> None:
        if not destination.startswith(GROUP_TOPIC_PREFIX) or self._loop is None:
            return
        group = destination[len(GROUP_TOPIC_PREFIX) :]
        try:
            message = json.loads(body)
        except ValueError:
            logger.warning("dropped a non-JSON message for group %s", group)
            return
        asyncio.run_coroutine_threadsafe(
            InMemoryChannelLayer.group_send(self, group, message), self._loop
        )

    async def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection.is_connected():
                self._connection.disconnect()
            self._connection = None
