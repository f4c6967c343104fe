"""Per-node certificate logins on the real ActiveMQ network, and the sender's identity the
brokers stamp into every message (the STOMP header ``JMSXUserID``).

A node logged in with its own certificate on its datacenter broker's TLS port publishes a
registration and a reply; the portal, subscribed at the NOC, reads who sent them in the
header, across the dc -> NOC bridge. A forged header, a claimed login, a certificate the
broker does not list and a node certificate at the NOC are checked too, and a node added to
a datacenter broker's users file logs in without a restart (reload=true).

Reads the network from ``$SWITCHBOARD_BROKERS_DIR/network.json`` (default var/activemq):
``scripts/brokers up`` makes the per-node certificates (scripts/make-dev-ca's
node0001/node0002.<dc>.example) and renders their logins. docs/tls.md "Per-node logins".
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import stomp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.protocol import broadcast_topic, registration_queue, reply_queue
from agents.protocol.transport import BrokerUnavailable, TLSConfig, connect
from harness.activemq import NetworkDescription, network_description, network_json
from harness.services import port_open, require_service
from tests.integration.wire import JMSX_USER_ID, Frames

pytestmark = [pytest.mark.activemq, pytest.mark.integration, pytest.mark.timeout(180)]

BASE_DIR = Path(__file__).resolve().parents[2]
NODE_PASSWORD = os.environ.get("SWITCHBOARD_AMQ_NODE_PASSWORD", "node-secret")
PORTAL_PASSWORD = os.environ.get("SWITCHBOARD_AMQ_PORTAL_PASSWORD", "portal-secret")
NODE_A, NODE_B = "node0001.a.example", "node0002.a.example"  # scripts/make-dev-ca's defaults
REGISTRATION = registration_queue("mcollective")
BRIDGE_WAIT = 30.0  # a new subscription at the NOC needs a moment to cross to dc_a


def _load_render() -> ModuleType:
    path = BASE_DIR / "deploy" / "activemq" / "render.py"
    spec = importlib.util.spec_from_file_location("amq_render", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("amq_render", module)
    spec.loader.exec_module(module)
    return module


render = _load_render()


class Network:
    """The brokers' TLS (and plain) addresses and the client material, from network.json."""

    def __init__(self, description: NetworkDescription) -> None:
        self.root = description.directory
        self.noc = description.stomp("noc")
        self.dc_a = description.stomp("dc_a")
        self.dc_b = description.stomp("dc_b")
        plain = description.has_stomp("dc_a", tls=False)
        self.dc_a_plain = description.stomp("dc_a", tls=False) if plain else None
        self.ca = description.ca_file
        self.tls_dir = description.tls_dir
        self.portal = description.client_tls("portal")
        self.nodes = description.nodes()

    def node(self, identity: str) -> TLSConfig:
        return self.nodes[identity]


@pytest.fixture(scope="module")
def network() -> Network:
    description = network_description()
    ready = description is not None and description.has_nodes(NODE_A, NODE_B)
    net = Network(description) if description is not None and ready else None
    require_service(
        f"The ActiveMQ network with per-node certificate logins ({network_json()})",
        net is not None and all(port_open(*a) for a in (net.noc, net.dc_a, net.dc_b)),
        "start it with `scripts/brokers up` (TLS is on by default and makes the per-node "
        f"certificates {NODE_A}, {NODE_B}; SWITCHBOARD_BROKERS_DIR picks another network)",
    )
    assert net is not None
    return net


@pytest.fixture(scope="module")
def noc(network: Network) -> Iterator[tuple[Frames, str]]:
    """The portal at the NOC over TLS, subscribed to the registrations and to a reply queue."""
    frames = Frames()
    conn = connect([network.noc], "portal", PORTAL_PASSWORD, tls=network.portal,
                   listeners={"frames": frames})  # fmt: skip
    replies = reply_queue("mcollective", f"identity_{os.getpid()}")
    conn.subscribe(REGISTRATION, id="registrations", ack="auto")
    conn.subscribe(replies, id="replies", ack="auto")
    yield frames, replies
    conn.disconnect()


def stamped(
    sender: stomp.Connection,
    frames: Frames,
    destination: str,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Send a tagged message until the NOC subscriber has it; the headers it arrived with.

    Resent every second: the first ones may go nowhere while the NOC's subscription is still
    crossing the bridge (a topic keeps no message for a subscriber it does not know yet).
    """
    body = f"identity-test {uuid.uuid4().hex}"
    deadline = time.monotonic() + BRIDGE_WAIT
    while time.monotonic() < deadline:
        sender.send(destination, body, headers=headers or {})
        got = frames.first(body, timeout=1.0)
        if got is not None:
            return got
    raise AssertionError(f"{body!r} sent to {destination} never reached the NOC subscriber")


def node_connection(network: Network, identity: str, login: str = "node",
                    passcode: str = "not-checked-on-a-tls-port") -> stomp.Connection:  # fmt: skip
    return connect([network.dc_a], login, passcode, timeout=10, tls=network.node(identity))


def test_a_registration_carries_the_node_identity_its_certificate_logged_in_as(
    network: Network, noc: tuple[Frames, str]
) -> None:
    frames, _replies = noc
    sender = node_connection(network, NODE_A)
    try:
        headers = stamped(sender, frames, REGISTRATION)
    finally:
        sender.disconnect()
    # stamped by dc_a, kept by the NOC across the bridge (not "bridge-dc_a", not "node")
    assert headers[JMSX_USER_ID] == NODE_A
    assert headers["destination"] == REGISTRATION


def test_a_reply_carries_the_node_identity_too(network: Network, noc: tuple[Frames, str]) -> None:
    frames, replies = noc
    sender = node_connection(network, NODE_B)
    try:
        headers = stamped(sender, frames, replies)
    finally:
        sender.disconnect()
    assert headers[JMSX_USER_ID] == NODE_B


def test_a_forged_header_is_overwritten(network: Network, noc: tuple[Frames, str]) -> None:
    frames, replies = noc
    sender = node_connection(network, NODE_A)
    try:
        registration = stamped(sender, frames, REGISTRATION, {JMSX_USER_ID: NODE_B})
        reply = stamped(sender, frames, replies, {JMSX_USER_ID: "portal"})
    finally:
        sender.disconnect()
    assert registration[JMSX_USER_ID] == NODE_A
    assert reply[JMSX_USER_ID] == NODE_A


def test_a_node_cannot_log_in_as_another_by_claiming_its_login(
    network: Network, noc: tuple[Frames, str]
) -> None:
    """On a TLS port the certificate decides: the STOMP login (even the portal's, with its
    password) is not used, so node A's certificate is node A whatever it claims."""
    frames, _replies = noc
    sender = node_connection(network, NODE_A, login=NODE_B)
    try:
        assert stamped(sender, frames, REGISTRATION)[JMSX_USER_ID] == NODE_A
    finally:
        sender.disconnect()

    errors = Frames()
    posing = connect([network.dc_a], "portal", PORTAL_PASSWORD, timeout=10,
                     tls=network.node(NODE_A), listeners={"errors": errors})  # fmt: skip
    try:
        posing.send(broadcast_topic("mcollective", "rpcutil"), "{}", headers={"receipt": "r"})
        message = errors.errors.get(timeout=10)
    finally:
        if posing.is_connected():
            posing.disconnect()
    # ActiveMQ's authorization names a certificate login by its DN (JMSXUserID by its user)
    dn = f"CN={NODE_A}, O={render.DEV_CERT_ORG}"
    assert f"User {dn} is not authorized to write to: topic://mcollective.rpcutil.agent" in (
        message
    )


def test_the_shared_password_login_is_stamped_as_node(
    network: Network, noc: tuple[Frames, str]
) -> None:
    if network.dc_a_plain is None:
        pytest.skip("a --tls-only network has no plain port")
    frames, _replies = noc
    sender = connect([network.dc_a_plain], "node", NODE_PASSWORD, timeout=10)
    try:
        headers = stamped(sender, frames, REGISTRATION, {JMSX_USER_ID: NODE_A})
    finally:
        sender.disconnect()
    assert headers[JMSX_USER_ID] == "node"


def _issue(network: Network, identity: str, directory: Path) -> TLSConfig:
    """A client certificate for ``identity`` from the network's (development) CA."""
    ca_key_path = network.tls_dir / "ca.key"
    if not ca_key_path.exists():
        pytest.skip(f"{ca_key_path} missing: not a scripts/make-dev-ca CA")
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(Path(network.ca).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, render.DEV_CERT_ORG),
        x509.NameAttribute(NameOID.COMMON_NAME, identity),
    ])  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / f"{identity}.pem", directory / f"{identity}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSConfig(network.ca, str(cert_path), str(key_path))


def test_a_certificate_the_broker_does_not_list_is_refused_with_the_reason(
    network: Network, tmp_path: Path
) -> None:
    identity = f"stranger{os.getpid()}.a.example"
    stranger = _issue(network, identity, tmp_path)  # signed by the right CA, but not listed
    with pytest.raises(BrokerUnavailable) as refused:
        connect([network.dc_a], "node", NODE_PASSWORD, timeout=5, tls=stranger)
    assert f"No user for client certificate: CN={identity}, O={render.DEV_CERT_ORG}" in str(
        refused.value
    )


def test_a_node_certificate_is_refused_at_the_noc(network: Network) -> None:
    """Nodes never log in at the NOC: it lists no node certificate (docs/tls.md)."""
    with pytest.raises(BrokerUnavailable, match=f"No user for client certificate: CN={NODE_A},"):
        connect([network.noc], "node", NODE_PASSWORD, timeout=5, tls=network.node(NODE_A))


def test_a_node_added_to_the_users_file_logs_in_without_a_restart(
    network: Network, noc: tuple[Frames, str], tmp_path: Path
) -> None:
    """What adding a node in production is (docs/tls.md): its certificate's DN in
    certificate-users.properties and its user in the groups, on its datacenter broker;
    reload=true reads them at the next login. Taking it out refuses its next login."""
    frames, _replies = noc
    identity = f"added{os.getpid()}.a.example"
    tls = _issue(network, identity, tmp_path)
    login = render.certificate_login(Path(tls.cert_file), render.NODES_GROUP, "datacenter")
    conf = network.root / "dc_a" / "conf"
    users, groups = conf / render.CERTIFICATE_USERS_FILE, conf / render.GROUPS_FILE
    saved = {path: path.read_text(encoding="latin-1") for path in (users, groups)}

    def group_line(line: str) -> str:
        name, _, members = line.partition("=")
        if name in (render.NODES_GROUP, "everyone"):
            return f"{name}={','.join(filter(None, [*members.split(','), identity]))}"
        return line

    try:
        render.write_atomically(users, saved[users] + f"{login.user}={login.dn}\n")
        render.write_atomically(
            groups, "\n".join(map(group_line, saved[groups].splitlines())) + "\n"
        )
        sender = connect([network.dc_a], "node", "unused", timeout=10, tls=tls)
        try:
            assert stamped(sender, frames, REGISTRATION)[JMSX_USER_ID] == identity
        finally:
            sender.disconnect()
    finally:
        for path, text in saved.items():
            render.write_atomically(path, text)
    with pytest.raises(BrokerUnavailable, match=f"No user for client certificate: CN={identity},"):
        connect([network.dc_a], "node", "unused", timeout=5, tls=tls)
