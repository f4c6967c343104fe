"""STOMP connections with the settings MCollective's connector uses, and a bounded connect.

stomp.py's defaults are wrong for a fleet (no heart-beats, three reconnect attempts), so
every connection is built here: heart-beats on, reconnect back-off from 0.01 s doubling to
30 s, and an initial connect that gives up after ``timeout`` seconds with BrokerUnavailable
instead of hanging the caller.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import stomp
from stomp.exception import ConnectFailedException

HEADER_REPLY_TO = "reply-to"
HEADER_CONTENT_TYPE = "content-type"
HEADER_EXPIRES = "expires"
HEADER_IDENTITY = "mc_identity"
CONTENT_TYPE_JSON = "application/json"

DEFAULT_HEARTBEATS = (10000, 10000)
DEFAULT_CONNECT_TIMEOUT = 5.0
# -1 is stomp.py's "for ever"; the bound for the first connect comes from our own deadline.
RECONNECT_ATTEMPTS_FOREVER = -1


class BrokerUnavailable(ConnectionError):
    """No broker in the list accepted a STOMP connection within the time allowed."""


def parse_brokers(spec: str) -> list[tuple[str, int]]:
    """Parse ``"h1:61613,h2:61613"`` into ``[("h1", 61613), ("h2", 61613)]``.

    Raises ValueError naming the bad entry; an empty spec is an error, not "localhost".
    """
    brokers: list[tuple[str, int]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        host = host.strip("[]")  # allow [::1]:61613
        if not sep or not host:
            raise ValueError(f"broker {item!r} must be host:port")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"broker {item!r} has a non-numeric port") from None
        if not 0 < port < 65536:
            raise ValueError(f"broker {item!r} has port {port} outside 1-65535")
        brokers.append((host, port))
    if not brokers:
        raise ValueError(f"no brokers in {spec!r}; expected host:port[,host:port...]")
    return brokers


def expires_header(msgtime: float, ttl: int) -> str:
    """STOMP ``expires`` value: milliseconds since the epoch when the request goes stale."""
    return str(int((msgtime + ttl) * 1000))


def request_headers(reply_to: str, msgtime: float, ttl: int) -> dict[str, str]:
    """Headers for publishing a Request (content type, reply-to, broker-side expiry)."""
    return {
        HEADER_REPLY_TO: reply_to,
        HEADER_EXPIRES: expires_header(msgtime, ttl),
    }


def format_brokers(brokers: list[tuple[str, int]]) -> str:
    """``h1:61613,h2:61613``: the inverse of parse_brokers, for messages and logs."""
    return ",".join(f"{h}:{p}" for h, p in brokers)


class _ErrorCatcher(stomp.ConnectionListener):
    """Remembers the broker's ERROR frame message so a refused login can be reported."""

    def __init__(self) -> None:
        self.error: str | None = None

    def on_error(self, frame: Any) -> None:
        self.error = frame.headers.get("message") or frame.body or "ERROR frame"


def _probe(brokers: list[tuple[str, int]], timeout: float) -> str:
    """Why each broker cannot be reached, for the BrokerUnavailable message."""
    causes = []
    for host, port in brokers:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                causes.append(f"{host}:{port} accepts TCP but did not answer STOMP CONNECT")
        except OSError as exc:
            causes.append(f"{host}:{port}: {exc.strerror or exc}")
    return "; ".join(causes)


def build_connection(
    brokers: list[tuple[str, int]],
    *,
    heartbeats: tuple[int, int] = DEFAULT_HEARTBEATS,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> stomp.Connection:
    """A not-yet-connected stomp.py Connection with fleet-safe reconnect and heart-beats."""
    return stomp.Connection(
        host_and_ports=list(brokers),
        heartbeats=heartbeats,
        prefer_localhost=False,
        try_loopback_connect=False,
        reconnect_sleep_initial=0.01,
        reconnect_sleep_increase=1.0,
        reconnect_sleep_jitter=0.1,
        reconnect_sleep_max=30.0,
        reconnect_attempts_max=RECONNECT_ATTEMPTS_FOREVER,
        # Only bounds the TCP connect: stomp.py puts the socket back to blocking afterwards.
        timeout=timeout,
    )


def start_connection(
    conn: stomp.Connection,
    brokers: list[tuple[str, int]],
    login: str | None,
    passcode: str | None,
    *,
    client_id: str | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Connect ``conn`` (wait=True) within ``timeout`` seconds or raise BrokerUnavailable.

    stomp.py retries for ever with reconnect_attempts_max=-1, so the connect runs in a
    helper thread and is abandoned (transport stopped) when the deadline passes.
    """
    catcher = _ErrorCatcher()
    conn.set_listener("switchboard-connect-errors", catcher)
    headers = {"client-id": client_id} if client_id else {}
    outcome: dict[str, BaseException | None] = {"error": None}

    def attempt() -> None:
        try:
            conn.connect(login, passcode, wait=True, headers=headers)
        except BaseException as exc:  # reported to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, name="stomp-connect", daemon=True)
    worker.start()
    worker.join(timeout)
    try:
        if worker.is_alive() or outcome["error"] is not None or not conn.is_connected():
            _abandon(conn)
            worker.join(1.0)
            if catcher.error:
                cause = f"broker refused the connection: {catcher.error}"
            elif isinstance(outcome["error"], ConnectFailedException | type(None)):
                cause = _probe(brokers, min(1.0, timeout))
            else:
                cause = repr(outcome["error"])
            raise BrokerUnavailable(
                f"could not connect to any broker in {format_brokers(brokers)} "
                f"within {timeout:g} s ({cause})"
            )
    finally:
        conn.remove_listener("switchboard-connect-errors")


def _abandon(conn: stomp.Connection) -> None:
    """Stop a connection attempt in progress and release its socket."""
    transport = conn.transport
    transport.running = False
    # Best effort: the socket may never have existed.
    with contextlib.suppress(Exception):
        transport.disconnect_socket()


def connect(
    brokers: list[tuple[str, int]] | str,
    login: str | None,
    passcode: str | None,
    *,
    client_id: str | None = None,
    heartbeats: tuple[int, int] = DEFAULT_HEARTBEATS,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    listeners: dict[str, stomp.ConnectionListener] | None = None,
) -> stomp.Connection:
    """A connected stomp.py Connection to the first broker of ``brokers`` that answers.

    Guarantees: heart-beats and unlimited back-off reconnects are configured, and the call
    returns or raises BrokerUnavailable within about ``timeout`` seconds. ``listeners`` are
    attached before connecting, so no frame is missed.
    """
    pool = parse_brokers(brokers) if isinstance(brokers, str) else list(brokers)
    conn = build_connection(pool, heartbeats=heartbeats, timeout=timeout)
    for name, listener in (listeners or {}).items():
        conn.set_listener(name, listener)
    start_connection(conn, pool, login, passcode, client_id=client_id, timeout=timeout)
    return conn


class SubscriptionConfirmer(stomp.ConnectionListener):
    """Proves that a broker has processed every frame sent before (SUBSCRIBEs above all).

    STOMP gives SUBSCRIBE no answer; a RECEIPT for a no-op transaction sent after it comes only
    once the broker has handled everything before it. Attach this listener to the connection,
    then call ``confirm`` after subscribing.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, threading.Event] = {}

    def on_receipt(self, frame: Any) -> None:
        event = self._waiting.get(frame.headers.get("receipt-id", ""))
        if event is not None:
            event.set()

    def confirm(self, conn: stomp.Connection, timeout: float, what: str) -> None:
        """Return once the broker confirmed, or raise BrokerUnavailable naming ``what``."""
        receipt = f"confirm-{id(self)}-{time.monotonic_ns()}"
        event = threading.Event()
        self._waiting[receipt] = event
        try:
            conn.send_frame("BEGIN", {"transaction": receipt, "receipt": receipt})
            conn.send_frame("ABORT", {"transaction": receipt})
            if not event.wait(timeout):
                raise BrokerUnavailable(f"the broker did not confirm {what} within {timeout:g} s")
        finally:
            self._waiting.pop(receipt, None)
