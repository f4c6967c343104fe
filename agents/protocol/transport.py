"""STOMP connections with the settings MCollective's connector uses, and a bounded connect.

stomp.py's defaults are wrong for a fleet (no heart-beats, three reconnect attempts), so
every connection is built here: heart-beats on, reconnect back-off from 0.01 s doubling to
30 s, and an initial connect that gives up after ``timeout`` seconds with BrokerUnavailable
instead of hanging the caller.

TLS (``TLSConfig``): the broker's certificate is checked against the given CA and must name
the host dialled (a SAN entry); the client shows its own certificate, as the brokers ask for
one on their TLS ports (docs/tls.md). A TLS failure becomes a BrokerUnavailable that says
which: unknown CA, wrong host name, a port not speaking TLS, a refused client certificate.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import stomp
from stomp.exception import ConnectFailedException, NotConnectedException

HEADER_REPLY_TO = "reply-to"
HEADER_CONTENT_TYPE = "content-type"
HEADER_EXPIRES = "expires"
HEADER_IDENTITY = "mc_identity"
# ActiveMQ message groups: every message of one group goes to the same consumer while it lives.
HEADER_GROUP = "JMSXGroupID"
# Set by ActiveMQ (populateJMSXUserID) to the login that sent the message; a client's own
# value is discarded. With per-node logins it names the node (docs/tls.md).
HEADER_BROKER_SENDER = "JMSXUserID"
CONTENT_TYPE_JSON = "application/json"

DEFAULT_HEARTBEATS = (10000, 10000)
DEFAULT_CONNECT_TIMEOUT = 5.0
# How a connect attempt ends when the socket fails or the broker hangs up (not an ERROR frame).
_LOST = ConnectFailedException | NotConnectedException | OSError
# -1 is stomp.py's "for ever"; the bound for the first connect comes from our own deadline.
RECONNECT_ATTEMPTS_FOREVER = -1


class BrokerUnavailable(ConnectionError):
    """No broker in the list accepted a STOMP connection within the time allowed."""


class TLSConfigError(BrokerUnavailable):
    """TLS settings that cannot work: a file missing or unreadable, a key not matching."""


@dataclass(frozen=True)
class TLSConfig:
    """TLS to every broker of a pool: the CA that signed the brokers' certificates, and this
    client's certificate and key (PEM files; the brokers' TLS ports require them)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if not self.ca_file:
            raise ValueError("TLS needs a CA file (the CA that signed the brokers' certificates)")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("TLS: give the client certificate and its key together")

    @classmethod
    def from_files(
        cls, ca_file: str | None, cert_file: str | None = None, key_file: str | None = None
    ) -> TLSConfig | None:
        """Settings as they come from the environment or a command line: None when no file is
        named (plain STOMP); ValueError when the files cannot go together (a certificate
        without a CA, or without its key), never a silent fall-back to plain STOMP."""
        if not (ca_file or cert_file or key_file):
            return None
        return cls(ca_file or "", cert_file or None, key_file or None)

    def context(self) -> ssl.SSLContext:
        """The client context: the CA only (no system store), host names checked.

        Raises TLSConfigError naming the file that cannot be used.
        """
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"TLS: cannot use CA file {self.ca_file}: {_reason(exc)}") from exc
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise TLSConfigError(
                    f"TLS: cannot use certificate {self.cert_file} with key {self.key_file}: "
                    f"{_reason(exc)}"
                ) from exc
        return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


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


# How long a registration may wait on the broker for a consumer, in register intervals: the
# node sends a newer one every interval (jittered +-10%), which supersedes it (the portal
# refuses a registration older than the one it recorded), so one waiting longer than two
# intervals is never the newest any more and only fills the broker while no consumer runs.
REGISTRATION_TTL_INTERVALS = 2
# A node with register_interval 0 registers only at start and reconnect, so its registration
# is not re-sent soon: keep it a day for a portal that is down for maintenance, and no longer,
# so a fleet's registrations cannot pile up without bound.
REGISTRATION_TTL_WITHOUT_INTERVAL = 86400.0


def registration_ttl(register_interval: float) -> float:
    """Seconds a registration may wait on the broker before it drops it undelivered."""
    if register_interval <= 0:
        return REGISTRATION_TTL_WITHOUT_INTERVAL
    return REGISTRATION_TTL_INTERVALS * register_interval


def registration_headers(identity: str, msgtime: float, register_interval: float) -> dict[str, str]:
    """Headers for sending a Registration: its message group (the node's identity, so one
    consumer takes all of a node's registrations while it lives) and its broker-side expiry."""
    return {
        HEADER_GROUP: identity,
        HEADER_EXPIRES: str(int((msgtime + registration_ttl(register_interval)) * 1000)),
    }


def format_brokers(brokers: list[tuple[str, int]]) -> str:
    """``h1:61613,h2:61613``: the inverse of parse_brokers, for messages and logs."""
    return ",".join(f"{h}:{p}" for h, p in brokers)


class _ErrorCatcher(stomp.ConnectionListener):
    """Remembers the broker's ERROR frame message so a refused login can be reported.

    stomp.py wakes the connecting thread before it hands the ERROR frame to the listeners,
    so the caller may look before the frame is here: ``wait`` gives it a moment.
    """

    # Listeners are called in the order of their names: this one first.
    NAME = "!switchboard-connect-errors"

    def __init__(self) -> None:
        self.error: str | None = None
        self._seen = threading.Event()

    def on_error(self, frame: Any) -> None:
        self.error = frame.headers.get("message") or frame.body or "ERROR frame"
        self._seen.set()

    def wait(self, timeout: float) -> str | None:
        self._seen.wait(timeout)
        return self.error


# A CONNECT without credentials: any STOMP broker answers it (ERROR or CONNECTED).
_PROBE_FRAME = b"CONNECT\naccept-version:1.2\nhost:switchboard-probe\n\n\x00"


def _probe(brokers: list[tuple[str, int]], timeout: float, tls: TLSConfig | None = None) -> str:
    """Why each broker cannot be reached, for the BrokerUnavailable message."""
    causes = []
    for host, port in brokers:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            causes.append(f"{host}:{port}: {exc.strerror or exc}")
            continue
        with sock:
            sock.settimeout(timeout)
            cause = _probe_tls(sock, host, tls) if tls else _probe_plain(sock)
        causes.append(f"{host}:{port} {cause}")
    return "; ".join(causes)


def _probe_plain(sock: socket.socket) -> str:
    try:
        sock.sendall(_PROBE_FRAME)
        answer = sock.recv(16)
    except TimeoutError:
        return "accepts TCP but did not answer STOMP CONNECT"
    except OSError:
        answer = b""  # reset or closed: same story as an empty answer
    if answer.startswith((b"CONNECTED", b"ERROR")):
        return "answers STOMP, but the connection was not completed in time"
    return (
        "closed the connection on a plain STOMP CONNECT: is it a TLS port? "
        "Then give the TLS CA, certificate and key"
    )


def _probe_tls(sock: socket.socket, host: str, tls: TLSConfig) -> str:
    try:
        context = tls.context()
    except TLSConfigError as exc:
        return str(exc)
    try:
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"sent a certificate that failed verification: {exc.verify_message}; "
            f"is {tls.ca_file} the CA that signed it, and does it name {host}?"
        )
    except TimeoutError:
        return "accepts TCP but did not answer the TLS handshake: is it a plain STOMP port?"
    except (ssl.SSLError, OSError) as exc:
        return f"failed the TLS handshake: {_reason(exc)} (is it a TLS port?)"
    with wrapped:
        try:
            wrapped.sendall(_PROBE_FRAME)
            answer = wrapped.recv(16)
        except TimeoutError:
            return "completed the TLS handshake but did not answer STOMP CONNECT"
        except (ssl.SSLError, OSError) as exc:
            answer, alert = b"", _reason(exc)
        else:
            alert = ""
    if answer.startswith((b"CONNECTED", b"ERROR")):
        return "answers STOMP over TLS, but the connection was not completed in time"
    mine = f"certificate {tls.cert_file}" if tls.cert_file else "no client certificate"
    return (
        f"closed the connection after the TLS handshake{f' ({alert})' if alert else ''}: "
        f"it refused this client ({mine}); the broker wants a certificate signed by a CA "
        f"in its trust store"
    )


def build_connection(
    brokers: list[tuple[str, int]],
    *,
    heartbeats: tuple[int, int] = DEFAULT_HEARTBEATS,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    tls: TLSConfig | None = None,
) -> stomp.Connection:
    """A not-yet-connected stomp.py Connection with fleet-safe reconnect and heart-beats.

    With ``tls`` every broker of the pool is dialled over TLS; its files are checked here
    (TLSConfigError), not at the first connect.
    """
    conn = stomp.Connection(
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
    if tls is not None:
        tls.context()  # fail now, with the file's name, rather than retry for ever
        if _NON_BLOCKING_TLS:
            conn.transport.__class__ = _TLSTransport
        conn.set_ssl(
            for_hosts=list(brokers),
            ca_certs=tls.ca_file,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
        )
    return conn


# stomp.py 9.0 reads TLS sockets without blocking (Transport.blocking flips to False after the
# handshake; shutdown_queue() flips it back); 8.0 (Debian 12's python3-stomp, which the node
# package may run on) reads them blocking, as plain ones, and needs no _TLSTransport: given
# one, its first read ended the connection right after CONNECTED
# (tests/integration/test_installed_node.py).
_NON_BLOCKING_TLS = hasattr(stomp.transport.Transport, "shutdown_queue")


class _TLSTransport(stomp.transport.Transport):
    """stomp.py 9.0's transport, noticing when a TLS connection is closed.

    On TLS, stomp.py reads without blocking and takes an empty read for "nothing yet", so a
    dead broker went unnoticed until heart-beats timed out, with the reader spinning a core
    all the while (measured: 1.6 CPU-seconds in the 2 s before a 2 s heart-beat noticed; a
    plain connection notices in 0.2 s). A TLS socket says "nothing yet" with SSLWantRead
    (which stomp.py turns into None until CONNECTED has arrived); an empty read, or a socket
    error once connected, is the end of the stream: switch to the blocking path, which
    reports it as a closed connection (listeners get on_disconnected).
    """

    def receive(self) -> bytes | None:
        if self.blocking or not isinstance(self.socket, ssl.SSLSocket):
            received: bytes | None = super().receive()
            return received
        try:
            data: bytes | None = super().receive()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except OSError:
            data = b""
        if data == b"":
            self.shutdown_queue()  # blocking again; cleanup() then closes the socket
        return data


def tls_of(conn: stomp.Connection, broker: tuple[str, int]) -> TLSConfig | None:
    """The TLS settings ``build_connection`` gave ``conn`` for ``broker`` (None: plain)."""
    params = conn.transport.get_ssl(broker)
    if not params:
        return None
    return TLSConfig(params["ca_certs"], params["cert_file"], params["key_file"])


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
    conn.set_listener(_ErrorCatcher.NAME, catcher)
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
            # A ConnectFailedException is stomp.py's word for an ERROR frame while connecting.
            refused = catcher.wait(
                1.0 if isinstance(outcome["error"], ConnectFailedException) else 0
            )
            if refused:
                cause = f"broker refused the connection: {refused}"
            elif isinstance(outcome["error"], _LOST | type(None)):
                # the connection failed or was closed under us (a TLS refusal shows up as
                # any of these): ask each broker why
                # (build_connection gives every broker of the pool the same TLS settings)
                cause = _probe(brokers, min(1.0, timeout), tls_of(conn, brokers[0]))
            else:
                cause = repr(outcome["error"])
            raise BrokerUnavailable(
                f"could not connect to any broker in {format_brokers(brokers)} "
                f"within {timeout:g} s ({cause})"
            )
    finally:
        conn.remove_listener(_ErrorCatcher.NAME)


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
    tls: TLSConfig | None = None,
) -> stomp.Connection:
    """A connected stomp.py Connection to the first broker of ``brokers`` that answers.

    Guarantees: heart-beats and unlimited back-off reconnects are configured, and the call
    returns or raises BrokerUnavailable within about ``timeout`` seconds. ``listeners`` are
    attached before connecting, so no frame is missed. ``tls``: every broker over TLS.
    """
    pool = parse_brokers(brokers) if isinstance(brokers, str) else list(brokers)
    conn = build_connection(pool, heartbeats=heartbeats, timeout=timeout, tls=tls)
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
