"""TLS on the real ActiveMQ network: STOMP over TLS at both ends, the bridges over TLS between.

Reads the network from ``$SWITCHBOARD_BROKERS_DIR/network.json`` (default var/activemq), so it
runs against any network `scripts/brokers up --dir DIR --port-base N` started.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Filter
from agents.protocol.security import SigningKey, TrustedKeys
from agents.protocol.transport import BrokerUnavailable, TLSConfig, connect
from harness.activemq import NetworkDescription, network_description, network_json
from harness.services import port_open, require_service
from portal.broker.gateway import BrokerGateway, BrokerSettings
from tests.integration.wire import eventually, ping
from tests.tls_material import make_material

pytestmark = [pytest.mark.activemq, pytest.mark.integration, pytest.mark.timeout(180)]

NODE_PASSWORD = os.environ.get("SWITCHBOARD_AMQ_NODE_PASSWORD", "node-secret")
PORTAL_PASSWORD = os.environ.get("SWITCHBOARD_AMQ_PORTAL_PASSWORD", "portal-secret")
IDENTITY = f"tls-node-{os.getpid()}"


class Network:
    """The brokers' TLS addresses and the client material, from network.json."""

    def __init__(self, description: NetworkDescription) -> None:
        self.noc = description.stomp("noc")
        self.dc_a = description.stomp("dc_a")
        self.ca = description.ca_file
        self.portal = description.client_tls("portal")
        self.node = description.client_tls("node")


@pytest.fixture(scope="module")
def network() -> Network:
    description = network_description()
    net = Network(description) if description and description.tls_ready else None
    require_service(
        f"The ActiveMQ network with TLS ({network_json()})",
        net is not None and port_open(*net.noc) and port_open(*net.dc_a),
        "start it with `scripts/brokers up` (TLS is on by default; SWITCHBOARD_BROKERS_DIR "
        "picks another network's directory)",
    )
    assert net is not None
    return net


@pytest.fixture(scope="module")
def portal_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "portal.pem"
    SigningKey.load_or_create(str(path))
    return path


@pytest.fixture(scope="module")
def node(network: Network, portal_key: Path) -> Iterator[NodeDaemon]:
    """A node on dc_a's STOMP over TLS port, obeying the portal key."""
    daemon = NodeDaemon(
        NodeConfig(
            identity=IDENTITY,
            backend="simulated",
            brokers=[network.dc_a],
            login="node",
            passcode=NODE_PASSWORD,
            register_interval=0,
            tls_ca=network.node.ca_file,
            tls_cert=network.node.cert_file,
            tls_key=network.node.key_file,
        ),
        trusted_keys=TrustedKeys([SigningKey.load_or_create(str(portal_key)).public_key]),
    )
    daemon.start()
    yield daemon
    daemon.stop()


def test_a_request_crosses_the_tls_bridges_to_a_tls_node_and_back(
    network: Network, node: NodeDaemon, portal_key: Path
) -> None:
    key = SigningKey.load_or_create(str(portal_key))

    # the node's subscription needs a moment to cross the bridge to the NOC
    def answered() -> bool:
        return ping(network.noc, "portal", PORTAL_PASSWORD, IDENTITY, key, tls=network.portal) == [
            IDENTITY
        ]

    assert eventually(answered, 30)
    assert node.is_connected()


def test_the_portal_gateway_over_tls_reaches_the_node(
    network: Network, node: NodeDaemon, portal_key: Path
) -> None:
    config = BrokerSettings(
        brokers=f"{network.noc[0]}:{network.noc[1]}",
        login="portal",
        passcode=PORTAL_PASSWORD,
        collective="mcollective",
        signing_key=str(portal_key),
        tls=network.portal,
    )

    def discovered() -> bool:
        with BrokerGateway(config) as gateway:
            request = gateway.new_request(
                agent="rpcutil",
                action="ping",
                data={},
                filter=Filter(identity=[IDENTITY]).to_dict(),
                callerid="user=tls-test",
                ttl=10,
            )
            gateway.publish(request)
            for received in gateway.replies(request.requestid, time.monotonic() + 3):
                if received is not None:
                    return received.reply.senderid == IDENTITY
        return False

    assert eventually(discovered, 30)


def test_a_client_without_a_certificate_is_refused(network: Network) -> None:
    with pytest.raises(BrokerUnavailable, match="refused this client \\(no client certificate\\)"):
        connect([network.noc], "portal", PORTAL_PASSWORD, timeout=3, tls=TLSConfig(network.ca))


def test_a_certificate_from_another_ca_is_refused(network: Network, tmp_path: Path) -> None:
    stranger = make_material(tmp_path)  # its client certificate, but the network's CA
    tls = TLSConfig(network.ca, stranger.client_cert, stranger.client_key)
    with pytest.raises(BrokerUnavailable, match="refused this client \\(certificate "):
        connect([network.noc], "portal", PORTAL_PASSWORD, timeout=3, tls=tls)


def test_a_client_trusting_another_ca_refuses_the_broker(network: Network, tmp_path: Path) -> None:
    stranger = make_material(tmp_path)
    tls = TLSConfig(stranger.ca, network.portal.cert_file, network.portal.key_file)
    with pytest.raises(BrokerUnavailable, match="sent a certificate that failed verification"):
        connect([network.noc], "portal", PORTAL_PASSWORD, timeout=2, tls=tls)


def test_a_name_the_broker_certificate_does_not_hold_is_refused(network: Network) -> None:
    # 127.1 is 127.0.0.1 to the resolver, but not a name in the broker's certificate
    with pytest.raises(BrokerUnavailable, match="Hostname mismatch"):
        connect(
            [("127.1", network.noc[1])], "portal", PORTAL_PASSWORD, timeout=2, tls=network.portal
        )


def test_plain_stomp_to_the_tls_port_says_so(network: Network) -> None:
    with pytest.raises(BrokerUnavailable, match="is it a TLS port"):
        connect([network.noc], "portal", PORTAL_PASSWORD, timeout=2)
