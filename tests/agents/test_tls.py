"""TLS on the node and client side, without a broker: TLSConfig, the node config keys, and
the BrokerUnavailable reasons against small local TLS and plain servers."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp

from agents.config import ConfigError, NodeConfig, config_from_dict
from agents.protocol.transport import (
    BrokerUnavailable,
    TLSConfig,
    TLSConfigError,
    build_connection,
    connect,
    tls_of,
)
from tests.tls_material import Material, make_material

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


# ----------------------------------------------------------------------------- servers
class Server:
    """A one-thread TCP server on 127.0.0.1 that runs ``handle`` for each connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass  # the client gave up or failed its handshake: that is what is tested
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    servers: list[Server] = []

    def start(handle: Callable[[socket.socket], None]) -> Server:
        servers.append(Server(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def server_context(material: Material, *, require_client_cert: bool = True) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(material.server_cert, material.server_key)
    if require_client_cert:
        context.load_verify_locations(material.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def read_frame(sock: socket.socket) -> bytes:
    data = b""
    while b"\0" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def stomp_over_tls(material: Material, then: Callable[[ssl.SSLSocket], None] | None = None):
    """A STOMP-over-TLS stand-in: answers CONNECT with CONNECTED, then runs ``then``."""

    def handle(raw: socket.socket) -> None:
        with server_context(material).wrap_socket(raw, server_side=True) as tls:
            if read_frame(tls).startswith((b"CONNECT", b"STOMP")):
                tls.sendall(b"CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\0")
            if then:
                then(tls)
            else:
                while read_frame(tls):
                    pass

    return handle


def plain_close(raw: socket.socket) -> None:
    raw.recv(1024)  # a TLS port facing plain text: the handshake fails, the socket closes


def silent(raw: socket.socket) -> None:
    time.sleep(3)  # a plain STOMP port waiting for a NUL-terminated frame


# ----------------------------------------------------------------------------- TLSConfig
def test_tls_config_wants_a_ca_and_cert_with_key(material: Material) -> None:
    with pytest.raises(ValueError, match="CA file"):
        TLSConfig("")
    with pytest.raises(ValueError, match="together"):
        TLSConfig(material.ca, material.client_cert)
    assert TLSConfig(material.ca).context().verify_mode == ssl.CERT_REQUIRED
    assert material.client().context().check_hostname is True


def test_tls_settings_from_files_are_plain_only_when_none_is_given(material: Material) -> None:
    assert TLSConfig.from_files("", "", "") is None
    assert TLSConfig.from_files(None) is None
    assert TLSConfig.from_files(material.ca, "", "") == TLSConfig(material.ca)
    # A certificate without a CA is a mistake to report, never a quiet plain connection.
    with pytest.raises(ValueError, match="CA file"):
        TLSConfig.from_files("", material.client_cert, material.client_key)
    with pytest.raises(ValueError, match="together"):
        TLSConfig.from_files(material.ca, material.client_cert, "")


def test_unusable_files_are_named(material: Material, tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"CA file /nope/ca.pem: No such file"):
        TLSConfig("/nope/ca.pem").context()
    with pytest.raises(TLSConfigError, match=r"cannot use certificate .*client.pem with key"):
        TLSConfig(material.ca, material.client_cert, material.server_key).context()
    # build_connection checks the files at once (a TLSConfigError is a BrokerUnavailable)
    with pytest.raises(BrokerUnavailable, match="CA file"):
        build_connection([("127.0.0.1", 1)], tls=TLSConfig(str(tmp_path / "missing.pem")))


def test_build_connection_dials_every_broker_over_tls(material: Material) -> None:
    pool = [("127.0.0.1", 62624), ("127.0.0.1", 62634)]
    conn = build_connection(pool, tls=material.client())
    assert [tls_of(conn, broker) for broker in pool] == [material.client()] * 2
    assert tls_of(build_connection(pool), pool[0]) is None


# ----------------------------------------------------------------------------- node config
def test_node_config_tls_keys_resolve_from_the_config_file(
    material: Material, tmp_path: Path
) -> None:
    base = Path(material.ca).parent
    config = config_from_dict(
        {"tls_ca": "ca.pem", "tls_cert": "client.pem", "tls_key": "client.key"}, base
    )
    assert config.tls == material.client()
    assert NodeConfig().tls is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tls_ca": "missing.pem"}, "tls_ca: .*missing.pem is not a readable file"),
        ({"tls_ca": "ca.pem", "tls_cert": "client.pem"}, "tls_cert and tls_key together"),
        ({"tls_cert": "client.pem", "tls_key": "client.key"}, "need tls_ca"),
    ],
)
def test_node_config_tls_mistakes(material: Material, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, Path(material.ca).parent)


# ----------------------------------------------------------------------------- connecting
@pytest.mark.integration
def test_connects_over_tls_and_checks_the_server(material: Material, serve) -> None:
    server = serve(stomp_over_tls(material))
    conn = connect([("127.0.0.1", server.port)], "node", "pw", timeout=5, tls=material.client())
    assert conn.is_connected()
    conn.disconnect()


@pytest.mark.integration
def test_a_ca_that_did_not_sign_the_broker_is_named(
    material: Material, serve, tmp_path: Path
) -> None:
    other = make_material(tmp_path / "other")
    server = serve(stomp_over_tls(material))
    with pytest.raises(BrokerUnavailable) as err:
        connect([("127.0.0.1", server.port)], "node", "pw", timeout=1, tls=other.client())
    assert "sent a certificate that failed verification" in str(err.value)
    assert f"is {other.ca} the CA that signed it" in str(err.value)


@pytest.mark.integration
def test_a_host_name_the_certificate_does_not_name(material: Material, serve) -> None:
    server = serve(stomp_over_tls(material))  # certificate for IP 127.0.0.1 only
    with pytest.raises(BrokerUnavailable, match=r"Hostname mismatch.*'localhost'"):
        connect([("localhost", server.port)], "node", "pw", timeout=1, tls=material.client())


@pytest.mark.integration
def test_no_client_certificate_is_refused_with_the_reason(material: Material, serve) -> None:
    server = serve(stomp_over_tls(material))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as err:
        connect([("127.0.0.1", server.port)], "node", "pw", timeout=5, tls=TLSConfig(material.ca))
    assert "it refused this client (no client certificate)" in str(err.value)
    assert time.monotonic() - started < 5  # told at once, not after the timeout


@pytest.mark.integration
def test_plain_stomp_to_a_tls_port(material: Material, serve) -> None:
    server = serve(plain_close)
    with pytest.raises(BrokerUnavailable, match="is it a TLS port"):
        connect([("127.0.0.1", server.port)], "node", "pw", timeout=1)


@pytest.mark.integration
def test_tls_to_a_plain_port(material: Material, serve) -> None:
    server = serve(silent)
    with pytest.raises(BrokerUnavailable, match="did not answer the TLS handshake"):
        connect([("127.0.0.1", server.port)], "node", "pw", timeout=1, tls=material.client())


class Disconnects(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.seen = threading.Event()

    def on_disconnected(self) -> None:
        self.seen.set()


@pytest.mark.integration
def test_a_closed_tls_connection_is_noticed_at_once(material: Material, serve) -> None:
    """stomp.py alone spins on a closed TLS socket until heart-beats time out."""
    closing = threading.Event()
    server = serve(stomp_over_tls(material, then=lambda tls: closing.wait(10)))
    listener = Disconnects()
    conn = connect(
        [("127.0.0.1", server.port)],
        "node",
        "pw",
        timeout=5,
        heartbeats=(0, 0),  # no heart-beats to fall back on
        tls=material.client(),
        listeners={"d": listener},
    )
    cpu = time.process_time()
    closing.set()  # the server closes the connection
    assert listener.seen.wait(2), "the closed TLS connection went unnoticed"
    assert not conn.is_connected()
    assert time.process_time() - cpu < 1.0
