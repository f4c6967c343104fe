"""Per-node certificate logins in deploy/activemq/render.py: the JAAS files, who each broker
lists, the ACLs of the group ``nodes``, the JMSXUserID stamping, and reading certificate
subjects as Java prints them."""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _load("amq_render", ROOT / "deploy" / "activemq" / "render.py")
ORG = render.DEV_CERT_ORG
JAAS_FILES = ("login.config", "users.properties", "certificate-users.properties",
              "groups.properties")  # fmt: skip


def certificate(path: Path, *attributes: tuple[x509.ObjectIdentifier, str]) -> Path:
    """A self-signed certificate whose subject is ``attributes`` (in ASN.1 order)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


def dev_cert(path: Path, cn: str) -> Path:
    return certificate(path, (NameOID.ORGANIZATION_NAME, ORG), (NameOID.COMMON_NAME, cn))


def tls_dir(root: Path, nodes=("node0001.a.example", "node0002.a.example", "web.b.example")):
    """The certificates (no keys, no stores) render.py reads, in make-dev-ca's layout."""
    for name in ("portal", "node", "admin"):
        dev_cert(root / "clients" / f"{name}.pem", name)
    for broker in render.plan(["a", "b"], "127.0.0.1"):
        dev_cert(root / "brokers" / f"{broker.name}.pem", broker.service)
    for identity in nodes:
        dev_cert(root / "clients" / "nodes" / f"{identity}.pem", identity)
    return root


def read_properties(path: Path) -> dict[str, str]:
    """Enough of java.util.Properties for render.py's output (no continuation lines)."""
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(("#", "!")):
            continue
        key, value = re.split(r"(?<!\\)=", line, maxsplit=1)
        unescape = lambda s: s.encode("latin-1").decode("unicode_escape")  # noqa: E731
        out[unescape(key)] = unescape(value)
    return out


def rendered(tmp_path: Path, tls, datacenters=("a", "b")) -> Path:
    out = tmp_path / "out"
    render.render(
        out, list(datacenters), "127.0.0.1", "127.0.0.1", 63610, render.credentials(False),
        "test", tls,
    )  # fmt: skip
    return out


@pytest.fixture
def tls(tmp_path: Path):
    root = tls_dir(tmp_path / "tls")
    return render.TLS.from_dir(root, "store-pw", datacenters=["a", "b"])


# -- certificate subjects ------------------------------------------------------------------
def test_a_subject_reads_as_java_prints_it(tmp_path: Path) -> None:
    path = certificate(
        tmp_path / "c.pem",
        (NameOID.COUNTRY_NAME, "FR"),
        (NameOID.ORGANIZATION_NAME, "Example Corp."),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops (NOC)"),
        (NameOID.COMMON_NAME, "node0001.a.example"),
    )
    login = render.certificate_login(path, render.NODES_GROUP, "datacenter")
    assert login.user == "node0001.a.example"
    assert login.dn == "CN=node0001.a.example, OU=Ops (NOC), O=Example Corp., C=FR"


def test_the_dev_dn_matches_what_make_dev_ca_certificates_hold(tmp_path: Path) -> None:
    login = render.certificate_login(dev_cert(tmp_path / "p.pem", "portal"), "clients", "all")
    assert login.dn == render.dev_dn("portal") == f"CN=portal, O={ORG}"


@pytest.mark.parametrize(
    ("cn", "reason"),
    [("a,b", "cannot match reliably"), ("x+y", "cannot match reliably"),
     ("two  spaces", "cannot match reliably")],
)  # fmt: skip
def test_subjects_java_would_escape_are_refused(tmp_path: Path, cn: str, reason: str) -> None:
    path = dev_cert(tmp_path / "c.pem", cn)
    with pytest.raises(SystemExit, match=reason):
        render.certificate_login(path, "clients", "all", user="someone")


def test_a_node_certificate_needs_an_identity_as_its_cn(tmp_path: Path) -> None:
    path = certificate(tmp_path / "c.pem", (NameOID.ORGANIZATION_NAME, ORG))
    with pytest.raises(SystemExit, match="want exactly one CN"):
        render.certificate_login(path, render.NODES_GROUP, "datacenter")
    with pytest.raises(SystemExit, match="no PEM certificate"):
        render.certificate_subject("garbage", "x.pem")


# -- who is listed where -------------------------------------------------------------------
def test_nodes_are_listed_at_the_datacenter_brokers_only_and_bridges_at_the_other_end(
    tmp_path: Path, tls
) -> None:
    out = rendered(tmp_path, tls)
    noc = read_properties(out / "noc/conf/certificate-users.properties")
    dc_a = read_properties(out / "dc_a/conf/certificate-users.properties")
    assert set(noc) == {"portal", "admin", "bridge-dc_a", "bridge-dc_b"}
    assert noc["bridge-dc_a"] == f"CN=activemq-dc-a, O={ORG}"
    assert set(dc_a) == {
        "portal", "admin", "node", "bridge-noc",
        "node0001.a.example", "node0002.a.example", "web.b.example",
    }  # fmt: skip
    assert dc_a["node0001.a.example"] == f"CN=node0001.a.example, O={ORG}"
    assert dc_a["bridge-noc"] == f"CN=activemq-noc, O={ORG}"
    groups = read_properties(out / "dc_a/conf/groups.properties")
    assert groups["nodes"].split(",") == ["node0001.a.example", "node0002.a.example",
                                          "web.b.example"]  # fmt: skip
    assert groups["servers"] == "node"
    assert groups["bridges"] == "bridge,bridge-noc"
    assert set(groups["everyone"].split(",")) == set(dc_a) | set(render.USERS)
    assert read_properties(out / "noc/conf/groups.properties")["nodes"] == ""
    manifest = json.loads((out / "network.json").read_text())
    assert manifest["certificate_users"]["noc"]["bridge-dc_b"] == "bridges"
    assert manifest["certificate_users"]["dc_b"]["web.b.example"] == "nodes"
    assert manifest["tls"]["nodes"]["web.b.example"]["dn"] == f"CN=web.b.example, O={ORG}"
    assert manifest["tls"]["nodes"]["web.b.example"]["key"] is None  # no key beside it
    assert manifest["jmsx_user_id"] == {
        "stamped_by": ["noc", "dc_a", "dc_b"],
        "kept_across_bridges": True,
    }


def test_a_tls_render_logs_in_through_jaas_and_stamps_the_sender(tmp_path: Path, tls) -> None:
    out = rendered(tmp_path, tls)
    for broker in ("noc", "dc_a", "dc_b"):
        conf = out / broker / "conf"
        xml = (conf / "activemq.xml").read_text()
        assert "simpleAuthenticationPlugin" not in xml
        assert '<jaasDualAuthenticationPlugin configuration="switchboard-password"' in xml
        assert 'sslConfiguration="switchboard-certificate"/>' in xml
        assert 'populateJMSXUserID="true"' in xml
        assert 'useAuthenticatedPrincipalForJMSXUserID="true"' in xml
        for name in JAAS_FILES:
            assert (conf / name).is_file(), name
        login = (conf / "login.config").read_text()
        assert "org.apache.activemq.jaas.TextFileCertificateLoginModule required" in login
        assert 'textfiledn.user="certificate-users.properties"' in login
        assert login.count("        reload=true;") == 2
        assert read_properties(conf / "users.properties") == render.credentials(False)


def test_the_group_nodes_has_exactly_the_rights_of_servers(tmp_path: Path, tls) -> None:
    xml = (rendered(tmp_path, tls) / "dc_a/conf/activemq.xml").read_text()
    entries = re.findall(r"<authorizationEntry .*/>", xml)
    with_servers = [e for e in entries if "servers" in e]
    assert len(with_servers) == 8  # 4 per collective: mcollective and dc_a
    for entry in entries:
        for right in ("read", "write", "admin"):
            groups = re.search(f'{right}="([^"]*)"', entry).group(1).split(",")
            assert ("servers" in groups) == ("nodes" in groups), entry


def test_without_tls_the_passwords_stay_in_simple_authentication(tmp_path: Path, tls) -> None:
    out = rendered(tmp_path, tls)  # then the same directory again without TLS
    out = rendered(tmp_path, None)
    xml = (out / "dc_a/conf/activemq.xml").read_text()
    assert '<simpleAuthenticationPlugin anonymousAccessAllowed="false">' in xml
    assert (
        '<authenticationUser username="node" password="node-secret" groups="servers,everyone"/>'
        in xml
    )
    assert "jaas" not in xml.lower()
    assert 'populateJMSXUserID="true"' in xml  # the password login is stamped too
    assert '"nodes' not in xml and ",nodes" not in xml
    for name in JAAS_FILES:  # no stale logins from the TLS render
        assert not (out / "dc_a" / "conf" / name).exists(), name
    assert json.loads((out / "network.json").read_text())["certificate_users"] is None


def test_tls_only_keeps_the_certificate_logins(tmp_path: Path) -> None:
    root = tls_dir(tmp_path / "tls")
    tls = render.TLS.from_dir(root, "store-pw", tls_only=True, datacenters=["a", "b"])
    out = rendered(tmp_path, tls)
    xml = (out / "dc_a/conf/activemq.xml").read_text()
    assert "stomp+nio://" not in xml and "jaasDualAuthenticationPlugin" in xml
    assert "node0001.a.example" in (out / "dc_a/conf/certificate-users.properties").read_text()


def test_node_certs_elsewhere_and_their_errors(tmp_path: Path) -> None:
    root = tls_dir(tmp_path / "tls", nodes=())
    elsewhere = tmp_path / "fleet"
    dev_cert(elsewhere / "web01.pem", "web01.a.example")
    tls = render.TLS.from_dir(root, "pw", datacenters=["a", "b"], node_certs=elsewhere)
    assert [login.user for login in tls.logins if login.group == "nodes"] == ["web01.a.example"]

    dev_cert(elsewhere / "copy.pem", "web01.a.example")
    with pytest.raises(SystemExit, match=r"user 'web01\.a\.example' is also"):
        render.TLS.from_dir(root, "pw", datacenters=["a", "b"], node_certs=elsewhere)
    (elsewhere / "copy.pem").unlink()
    dev_cert(elsewhere / "portal.pem", "portal")
    with pytest.raises(SystemExit, match="reserved login"):
        render.TLS.from_dir(root, "pw", datacenters=["a", "b"], node_certs=elsewhere)
    with pytest.raises(SystemExit, match="not a directory"):
        render.TLS.from_dir(root, "pw", datacenters=["a", "b"], node_certs=tmp_path / "none")
    (root / "brokers" / "dc_b.pem").unlink()
    with pytest.raises(SystemExit, match=r"dc_b\.pem"):
        render.TLS.from_dir(root, "pw", datacenters=["a", "b"])


def test_the_main_entry_takes_node_certs(tmp_path: Path) -> None:
    root = tls_dir(tmp_path / "tls", nodes=())
    for name in ("truststore.p12", *(f"brokers/{b}.p12" for b in ("noc", "dc_a", "dc_b"))):
        (root / name).write_bytes(b"")
    fleet = tmp_path / "fleet"
    dev_cert(fleet / "db1.pem", "db1.b.example")
    out = tmp_path / "out"
    argv = ["--out", str(out), "--tls-dir", str(root), "--node-certs", str(fleet)]
    assert render.main(argv) == 0
    users = read_properties(out / "dc_b/conf/certificate-users.properties")
    assert users["db1.b.example"] == f"CN=db1.b.example, O={ORG}"
    with pytest.raises(SystemExit):
        render.main(["--out", str(out), "--node-certs", str(fleet)])  # needs --tls-dir


def test_properties_are_escaped_for_java() -> None:
    text = render._properties("h", [("a=b c", "x\\y=z é ☃")])
    assert text.splitlines()[1] == "a\\=b\\ c=x\\\\y=z \\u00e9 \\u2603"


def test_the_committed_compose_render_lists_the_dev_certificates() -> None:
    conf = render.RENDERED / "dc_a" / "conf"
    users = read_properties(conf / "certificate-users.properties")
    assert users["node"] == f"CN=node, O={ORG}"
    assert users["bridge-noc"] == f"CN=activemq-noc, O={ORG}"
    assert users["node0001.a.example"] == f"CN=node0001.a.example, O={ORG}"
    noc_users = read_properties(render.RENDERED / "noc/conf/certificate-users.properties")
    assert "node" not in noc_users and noc_users["bridge-dc_b"] == f"CN=activemq-dc-b, O={ORG}"
