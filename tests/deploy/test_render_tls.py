"""deploy/activemq/render.py with and without TLS, and scripts/make-dev-ca's output."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _load("amq_render", ROOT / "deploy" / "activemq" / "render.py")

TLS = render.TLS(
    keystore="/tls/brokers/{name}.p12",
    truststore="/tls/truststore.p12",
    store_password="store-pw",
    dir="/tls",
)


def rendered(tmp_path: Path, tls=None) -> tuple[dict[str, str], dict]:
    render.render(
        tmp_path, ["a", "b"], "127.0.0.1", "127.0.0.1", 63610, render.credentials(False),
        "test", tls,
    )  # fmt: skip
    xml = {b: (tmp_path / b / "conf" / "activemq.xml").read_text() for b in ("noc", "dc_a")}
    return xml, json.loads((tmp_path / "network.json").read_text())


def test_without_tls_no_ssl_connector_and_bridges_over_tcp(tmp_path: Path) -> None:
    xml, manifest = rendered(tmp_path)
    for text in xml.values():
        assert "sslContext" not in text
        assert "ssl://" not in text
        assert "stomp+nio://127.0.0.1:636" in text
    assert 'uri="static:(tcp://127.0.0.1:63616)?' in xml["dc_a"]
    assert manifest["tls"] is None
    assert manifest["brokers"][0]["stomp_ssl_port"] is None


def test_with_tls_ssl_connectors_stores_and_bridges_over_ssl(tmp_path: Path) -> None:
    xml, manifest = rendered(tmp_path, TLS)
    noc, dc_a = xml["noc"], xml["dc_a"]
    assert 'uri="stomp+nio+ssl://127.0.0.1:63614?transport.needClientAuth=true&amp;' in noc
    assert 'uri="ssl://127.0.0.1:63617?transport.needClientAuth=true&amp;' in noc
    assert 'uri="stomp+nio+ssl://127.0.0.1:63624?' in dc_a
    assert 'uri="stomp+nio://127.0.0.1:63623?' in dc_a  # plain ports stay by default
    assert 'keyStore="/tls/brokers/dc_a.p12"' in dc_a
    assert 'trustStore="/tls/truststore.p12" trustStorePassword="store-pw"' in dc_a
    assert 'uri="static:(ssl://127.0.0.1:63617)?' in dc_a
    assert "tcp://127.0.0.1:63616" not in dc_a
    assert "<!--" in noc and "--tls" not in noc  # no "--" inside an XML comment
    noc_entry = manifest["brokers"][0]
    assert (noc_entry["stomp_ssl_port"], noc_entry["openwire_ssl_port"]) == (63614, 63617)
    assert [b["stomp_ssl_port"] for b in manifest["brokers"]] == [63614, 63624, 63634]
    assert manifest["tls"]["ca_file"] == "/tls/ca.pem"
    assert manifest["tls"]["clients"]["node"] == {
        "cert": "/tls/clients/node.pem",
        "key": "/tls/clients/node.key",
    }


def test_tls_only_leaves_the_plain_ports_out(tmp_path: Path) -> None:
    tls_only = render.TLS(TLS.keystore, TLS.truststore, TLS.store_password, tls_only=True)
    xml, manifest = rendered(tmp_path, tls_only)
    assert "stomp+nio://" not in xml["noc"] and "tcp://" not in xml["dc_a"]
    assert "stomp+nio+ssl://127.0.0.1:63614" in xml["noc"]
    assert manifest["brokers"][1]["stomp_port"] is None
    assert manifest["brokers"][1]["stomp_ssl_port"] == 63624


def test_a_store_password_with_a_placeholder_is_refused(tmp_path: Path) -> None:
    bad = render.TLS(TLS.keystore, TLS.truststore, "pw${oops}")
    with pytest.raises(SystemExit, match="contains"):
        rendered(tmp_path, bad)


def test_committed_compose_renders_are_current_and_use_tls() -> None:
    assert render.check() == 0
    dc_a = (render.RENDERED / "dc_a" / "conf" / "activemq.xml").read_text()
    assert 'uri="static:(ssl://activemq-noc:62617)?' in dc_a
    assert 'keyStore="/opt/apache-activemq/tls/broker.p12"' in dc_a


@pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("keytool")), reason="needs openssl and keytool"
)
def test_make_dev_ca_is_idempotent_and_render_accepts_it(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    make = [sys.executable, str(ROOT / "scripts" / "make-dev-ca"), str(tls_dir)]
    first = subprocess.run(make, capture_output=True, text=True, check=True, timeout=120)
    # 3 brokers, portal, node, admin, and node0001/node0002 of each datacenter
    assert "10 certificate(s) made, 0 kept" in first.stdout
    for name in ("ca.pem", "truststore.p12", "brokers/noc.p12", "brokers/dc_b.key",
                 "clients/portal.pem", "clients/node.key", "clients/admin.pem",
                 "clients/nodes/node0001.a.example.pem",
                 "clients/nodes/node0002.b.example.key"):  # fmt: skip
        assert (tls_dir / name).is_file(), name
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(tls_dir / "brokers" / "dc_a.pem"), "-noout", "-ext",
         "subjectAltName"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:activemq-dc-a" in sans and "IP Address:127.0.0.1" in sans
    second = subprocess.run(make, capture_output=True, text=True, check=True, timeout=120)
    assert "0 certificate(s) made, 10 kept" in second.stdout
    (tls_dir / "clients" / "node.pem").unlink()
    third = subprocess.run(
        [*make, "--node", "web01.a.example"], capture_output=True, text=True, check=True,
        timeout=120,
    )  # fmt: skip
    assert "2 certificate(s) made, 9 kept" in third.stdout
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(tls_dir / "clients/nodes/web01.a.example.pem"),
         "-noout", "-subject", "-nameopt", "RFC2253"], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert subject.strip() == f"subject=CN=web01.a.example,O={render.DEV_CERT_ORG}"
    out = tmp_path / "amq"
    assert render.main(["--out", str(out), "--tls-dir", str(tls_dir)]) == 0
    assert str(tls_dir / "brokers" / "noc.p12") in (out / "noc/conf/activemq.xml").read_text()
    # every certificate in clients/nodes is a login at the datacenter brokers, by its DN
    dc_a_users = (out / "dc_a/conf/certificate-users.properties").read_text()
    assert f"web01.a.example=CN=web01.a.example, O={render.DEV_CERT_ORG}\n" in dc_a_users
    assert f"node0002.b.example=CN=node0002.b.example, O={render.DEV_CERT_ORG}\n" in dc_a_users
    assert "web01.a.example" not in (out / "noc/conf/certificate-users.properties").read_text()
    manifest = json.loads((out / "network.json").read_text())
    assert manifest["tls"]["nodes"]["web01.a.example"]["key"] == str(
        tls_dir / "clients/nodes/web01.a.example.key"
    )
