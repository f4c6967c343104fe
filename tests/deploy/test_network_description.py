"""harness.activemq.network_description: the network.json deploy/activemq/render.py writes, read
back as the tests and bench/tls.py use it (addresses, client and per-node TLS material)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agents.protocol.transport import TLSConfig
from harness.activemq import (
    BROKER_DIR,
    brokers_dir,
    network_description,
    network_json,
)

ROOT = Path(__file__).resolve().parents[2]
NODE_A, NODE_B = "node0001.a.example", "node0002.a.example"


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "amq_render", ROOT / "deploy" / "activemq" / "render.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("amq_render", module)
    spec.loader.exec_module(module)
    return module


render = _load_render()


def rendered(out: Path, tls=None) -> Path:
    render.render(
        out, ["a", "b"], "127.0.0.1", "127.0.0.1", 63610, render.credentials(False), "test", tls
    )
    return out


def tls_material(tls_dir: Path, *, tls_only: bool = False):
    """render.TLS for scripts/make-dev-ca's layout in ``tls_dir``: node A's key is there,
    node B's certificate only (its key lives on node B)."""
    nodes = tls_dir / "clients" / "nodes"
    nodes.mkdir(parents=True)
    logins = []
    for identity, with_key in ((NODE_A, True), (NODE_B, False)):
        cert = nodes / f"{identity}.pem"
        cert.write_text("certificate\n")
        if with_key:
            cert.with_suffix(".key").write_text("key\n")
        logins.append(
            render.CertLogin(
                identity, f"CN={identity}", render.NODES_GROUP, "datacenter", str(cert)
            )
        )
    return render.TLS(
        keystore=str(tls_dir / "brokers" / "{name}.p12"),
        truststore=str(tls_dir / "truststore.p12"),
        store_password="store-pw",
        tls_only=tls_only,
        dir=str(tls_dir),
        logins=tuple(logins),
    )


def test_no_network_json_is_no_network(tmp_path: Path) -> None:
    assert network_description(tmp_path) is None
    assert network_json(tmp_path) == tmp_path / "network.json"


def test_a_plain_network_has_plain_addresses_and_no_tls(tmp_path: Path) -> None:
    description = network_description(rendered(tmp_path))
    assert description is not None
    assert description.directory == tmp_path
    assert set(description.brokers) == {"noc", "dc_a", "dc_b"}
    assert description.stomp("noc", tls=False) == ("127.0.0.1", 63613)
    assert description.stomp("dc_a", tls=False) == ("127.0.0.1", 63623)
    assert not description.has_stomp("noc")
    with pytest.raises(LookupError):
        description.stomp("noc")
    assert description.tls is None
    assert not description.tls_ready
    assert description.nodes() == {}
    assert not description.has_nodes(NODE_A)


def test_a_tls_network_has_both_ports_and_the_client_and_node_material(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    description = network_description(rendered(tmp_path / "amq", tls_material(tls_dir)))
    assert description is not None
    assert description.stomp("noc") == ("127.0.0.1", 63614)
    assert description.stomp("dc_a") == ("127.0.0.1", 63624)
    assert description.stomp("dc_b") == ("127.0.0.1", 63634)
    assert description.stomp("dc_a", tls=False) == ("127.0.0.1", 63623)
    ca = str(tls_dir / "ca.pem")
    assert description.ca_file == ca
    assert description.tls_dir == tls_dir
    assert not description.tls_ready  # scripts/make-dev-ca has not made the CA yet
    (tls_dir / "ca.pem").write_text("ca\n")
    assert description.tls_ready

    clients = tls_dir / "clients"
    assert description.clients() == {
        name: TLSConfig(ca, str(clients / f"{name}.pem"), str(clients / f"{name}.key"))
        for name in ("portal", "node", "admin")
    }
    assert description.client_tls("portal").cert_file == str(clients / "portal.pem")
    # only the nodes whose key is on this machine can log in from here
    node_a = clients / "nodes" / NODE_A
    assert description.nodes() == {
        NODE_A: TLSConfig(ca, f"{node_a}.pem", f"{node_a}.key"),
    }
    assert description.has_nodes(NODE_A)
    assert not description.has_nodes(NODE_A, NODE_B)


def test_a_tls_only_network_has_no_plain_ports(tmp_path: Path) -> None:
    description = network_description(
        rendered(tmp_path / "amq", tls_material(tmp_path / "tls", tls_only=True))
    )
    assert description is not None
    assert description.has_stomp("dc_a")
    assert not description.has_stomp("dc_a", tls=False)
    with pytest.raises(LookupError):
        description.stomp("dc_a", tls=False)


def test_the_directory_is_switchboard_brokers_dir_else_var_activemq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWITCHBOARD_BROKERS_DIR", raising=False)
    assert brokers_dir() == BROKER_DIR == ROOT / "var" / "activemq"
    monkeypatch.setenv("SWITCHBOARD_BROKERS_DIR", str(tmp_path))
    assert brokers_dir() == tmp_path
    assert network_json() == tmp_path / "network.json"
    assert network_description() is None
    rendered(tmp_path)
    description = network_description()
    assert description is not None
    assert description.directory == tmp_path
