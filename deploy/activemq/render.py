#!/usr/bin/env python3
"""Render the Switchboard ActiveMQ network-of-brokers configs (stdlib only).

One NOC broker ``noc`` plus one broker ``dc_<name>`` per datacenter, in a star: each
datacenter broker opens two duplex bridges (topics, queues) to the NOC.

    render.py --out var/activemq                      # loopback configs (scripts/brokers)
    render.py --compose                               # rewrite deploy/activemq/rendered/
    render.py --check                                 # exit 1 if rendered/ is stale
    render.py --out DIR --host 0.0.0.0 --noc-address activemq-noc --datacenters a,b,c
    render.py --out DIR --tls-dir var/tls [--tls-only]   # TLS (scripts/make-dev-ca layout)
    render.py --out DIR --tls-dir DIR --node-certs DIR   # per-node certificate logins

Port plan: broker i (noc = 0, then the datacenters in order) gets STOMP
``port_base + 3 + 10*i`` and OpenWire ``port_base + 6 + 10*i`` (port_base 62610:
noc 62613/62616, dc_a 62623/62626, dc_b 62633/62636, ...). With TLS also STOMP over TLS
``port_base + 4 + 10*i`` and OpenWire over TLS ``port_base + 7 + 10*i`` (noc 62614/62617,
dc_a 62624/62627, ...); the bridges then dial the NOC's OpenWire TLS port, and every TLS port
wants a client certificate from the same CA (mutual TLS). ``--tls-only`` leaves the plain
ports out, as production should. See docs/tls.md.

With TLS, logins are ActiveMQ's JAAS (jaasDualAuthenticationPlugin, conf/login.config): on a
TLS port the client *certificate* decides who it is (its subject DN, looked up in
certificate-users.properties), on a plain port its user name and password (users.properties);
groups.properties holds the groups of both. Each node has its own certificate (CN = its
identity) and its own user in the group ``nodes``; the certificates are read from
``<tls-dir>/clients/nodes/*.pem`` (or ``--node-certs DIR``), the portal's, the shared node's
and the admin's from ``clients/``, each datacenter broker's (its bridge login at the NOC) from
``brokers/<name>.pem``. Every broker stamps the authenticated user into every message it
accepts (JMSXUserID). Without TLS the plain simpleAuthenticationPlugin stays.

Passwords default to development values; override them with the environment variables
SWITCHBOARD_AMQ_{PORTAL,NODE,BRIDGE,ADMIN}_PASSWORD. ``--compose`` and ``--check`` always
use the development values, so real secrets never land in the committed copies: production
renders into its own directory with ``--out`` and the variables set.
"""

from __future__ import annotations

import argparse
import base64
import filecmp
import json
import os
import re
import shutil
import string
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "activemq.xml.tmpl"
LOG_CONFIGS = ("log4j.properties", "log4j2.properties")  # Debian: log4j 1.2; upstream: log4j2
LOGIN_CONFIG = "login.config"  # JAAS domains for TLS renders (copied as is)
# TLS renders: the JAAS files next to activemq.xml (names fixed by login.config).
# user=password (plain ports, the bridges' vm:// ends)
PASSWORD_USERS_FILE = "users.properties"  # noqa: S105 - a file name
CERTIFICATE_USERS_FILE = "certificate-users.properties"  # user=certificate subject DN
GROUPS_FILE = "groups.properties"  # group=user,user,... (both kinds of login)
RENDERED = HERE / "rendered"
# Where each compose container finds its own key store and the trust store (docker-compose.yml
# mounts them from the dev CA's or production's TLS directory).
COMPOSE_TLS_DIR = "/opt/apache-activemq/tls"

DEFAULT_DATACENTERS = ("a", "b")
DEFAULT_PORT_BASE = 62610
COMPOSE_HOST = "0.0.0.0"  # noqa: S104 - containers listen on their own network namespace
COMPOSE_NOC_ADDRESS = "activemq-noc"

# user -> (groups, development password). Group names are what the ACLs refer to.
USERS = {
    "admin": ("admins,everyone", "admin-secret"),
    "bridge": ("bridges,everyone", "bridge-secret"),
    "portal": ("clients,everyone", "portal-secret"),
    "node": ("servers,everyone", "node-secret"),
}
PASSWORD_ENV = "SWITCHBOARD_AMQ_{}_PASSWORD"  # noqa: S105 - a variable name, not a secret
# The PKCS12 key and trust stores' password: scripts/make-dev-ca's throw-away default unless set.
STORE_PASSWORD_ENV = "SWITCHBOARD_AMQ_STORE_PASSWORD"  # noqa: S105 - a variable name
DEV_STORE_PASSWORD = "switchboard-dev-store"  # noqa: S105 - the throw-away dev CA's stores
CLIENT_CERTS = ("portal", "node", "admin")  # scripts/make-dev-ca: clients/<name>.pem and .key
# Per-node client certificates: clients/nodes/<identity>.pem (and .key, on the node only).
NODE_CERTS_DIR = "clients/nodes"
NODES_GROUP = "nodes"  # every per-node login; the same rights as "servers" (the shared node)
BRIDGE_CERT_USER = "bridge-{name}"  # a datacenter broker's certificate login at the NOC
# The development CA's subject organisation (scripts/make-dev-ca): the committed compose
# renders name the development certificates by DN without reading them.
DEV_CERT_ORG = "Switchboard development (throw-away)"
IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a node identity / certificate user

DC_NAME = re.compile(r"^[a-z][a-z0-9]*$")
BRIDGE_RECONNECT = "initialReconnectDelay=200&maxReconnectDelay=5000&useExponentialBackOff=true"
OPENWIRE_OPTIONS = "maximumConnections=1000&wireFormat.maxFrameSize=104857600"
STOMP_OPTIONS = (
    "transport.hbGracePeriodMultiplier=1.5&maximumConnections=10000"
    "&wireFormat.maxFrameSize=10485760"
)
# Mutual TLS, as Choria: a client (node, portal, bridge) must show a certificate from the CA.
NEED_CLIENT_AUTH = "transport.needClientAuth=true"


@dataclass
class Broker:
    name: str
    role: str  # "noc" or "datacenter"
    datacenter: str | None
    service: str  # docker-compose service name
    host: str  # listen address
    stomp_port: int | None  # None: TLS only
    openwire_port: int | None
    stomp_ssl_port: int | None = None  # None: no TLS on this broker
    openwire_ssl_port: int | None = None


@dataclass(frozen=True)
class CertLogin:
    """One certificate login: the user a TLS client becomes when it shows this certificate.

    ``where`` is the brokers that list it: "all", "noc" (the bridges' logins) or
    "datacenter" (nodes: they never log in at the NOC, see docs/tls.md "Per-node logins").
    """

    user: str
    dn: str  # the subject DN as Java prints it (X509Certificate.getSubjectDN().getName())
    group: str
    where: str = "all"
    cert: str | None = None  # the certificate file it was read from (manifest only)

    def listed_at(self, broker: Broker) -> bool:
        return self.where == "all" or self.where == broker.role


# -- certificate subjects, read without third-party modules (the renderer is stdlib only) --
# Attribute types Java's X500Name prints by keyword; anything else is refused (it would print
# as OID.x.y.z=#hex, which no one would type into a users file).
_DN_KEYWORDS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_DN_SPECIAL = set(',+="\\<>#;\n\r')
_DER_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _der(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the content) of the DER element at ``i``."""
    tag, length = data[i], data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[i : i + n], "big")
        i += n
    return tag, i, i + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        element = _der(data, start)
        out.append(element)
        start = element[2]
    return out


def _oid(raw: bytes) -> str:
    parts, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(map(str, [first, parts[0] - 40 * first, *parts[1:]]))


def certificate_subject(pem: str, source: str = "certificate") -> list[tuple[str, str]]:
    """The subject of the first certificate in ``pem``: [(keyword, value)], most specific
    first (the order Java prints), e.g. [("CN", "node0001.a.example"), ("O", "...")]."""
    match = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if not match:
        raise SystemExit(f"render.py: {source}: no PEM certificate in it")
    try:
        der = base64.b64decode("".join(match.group(1).split()))
        _, cert, cert_end = _der(der, 0)
        _, tbs, tbs_end = _children(der, cert, cert_end)[0]
        fields = _children(der, tbs, tbs_end)
        if fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        _, subject, subject_end = fields[4]  # serial, signature, issuer, validity, subject
        rdns = []
        for _, rdn, rdn_end in _children(der, subject, subject_end):
            atvs = _children(der, rdn, rdn_end)
            if len(atvs) != 1:
                raise SystemExit(f"render.py: {source}: multi-valued RDNs are not supported")
            _, atv, atv_end = atvs[0]
            (_, o, o_end), (vtag, v, v_end) = _children(der, atv, atv_end)
            oid = _oid(der[o:o_end])
            if oid not in _DN_KEYWORDS or vtag not in _DER_STRINGS:
                raise SystemExit(
                    f"render.py: {source}: subject attribute {oid} (tag {vtag:#x}) is not "
                    "supported: use CN, O, OU, C, ST, L, STREET, DC or UID"
                )
            rdns.append((_DN_KEYWORDS[oid], der[v:v_end].decode(_DER_STRINGS[vtag])))
    except (IndexError, ValueError) as exc:
        raise SystemExit(f"render.py: {source}: not a readable X.509 certificate ({exc})") from exc
    return rdns[::-1]


def java_dn(rdns: list[tuple[str, str]], source: str = "certificate") -> str:
    """The DN as ActiveMQ's TextFileCertificateLoginModule compares it: Java's
    ``X509Certificate.getSubjectDN().getName()``, "CN=x, OU=y, O=z". Values Java would quote
    or escape are refused rather than guessed at."""
    for key, value in rdns:
        if (
            not value
            or _DN_SPECIAL & set(value)
            or value != value.strip()
            or "  " in value
            or any(ord(ch) < 32 for ch in value)
        ):
            raise SystemExit(
                f"render.py: {source}: subject {key}={value!r} has characters a users file "
                'cannot match reliably (, + = " \\ < > # ; or extra spaces)'
            )
    return ", ".join(f"{key}={value}" for key, value in rdns)


def certificate_login(path: Path, group: str, where: str, user: str | None = None) -> CertLogin:
    """The login for the certificate in ``path``: ``user``, or the certificate's CN."""
    rdns = certificate_subject(path.read_text(encoding="ascii", errors="replace"), str(path))
    cns = [value for key, value in rdns if key == "CN"]
    if user is None:
        if len(cns) != 1 or not IDENTITY.match(cns[0]):
            raise SystemExit(
                f"render.py: {path}: want exactly one CN holding the node identity "
                f"([A-Za-z0-9._-]), found {cns}"
            )
        user = cns[0]
    return CertLogin(user, java_dn(rdns, str(path)), group, where, str(path))


def _bridge_at(broker: Broker) -> str:
    """Where a broker's certificate is a login: at the other end of its bridges. Both ends
    of a TLS bridge log in with the certificate the other end showed in the handshake (the
    bridge's vm:// end at each broker carries the peer's certificates), so the NOC lists
    every datacenter broker's certificate and each datacenter broker lists the NOC's."""
    return "datacenter" if broker.role == "noc" else "noc"


def dev_node_identities(datacenters) -> list[str]:
    """The per-node certificates scripts/make-dev-ca makes by default (and the tests use)."""
    return [f"node{i:04d}.{dc}.example" for dc in datacenters for i in (1, 2)]


def dev_dn(cn: str) -> str:
    """The DN of a scripts/make-dev-ca certificate for ``cn`` (compose renders)."""
    return java_dn([("CN", cn), ("O", DEV_CERT_ORG)])


def dev_cert_logins(datacenters) -> tuple[CertLogin, ...]:
    """The development CA's certificates, by DN: what the committed compose renders list."""
    return (
        CertLogin("admin", dev_dn("admin"), "admins"),
        CertLogin("portal", dev_dn("portal"), "clients"),
        CertLogin("node", dev_dn("node"), "servers", "datacenter"),
        *(
            CertLogin(
                BRIDGE_CERT_USER.format(name=b.name), dev_dn(b.service), "bridges", _bridge_at(b)
            )
            for b in plan(datacenters, COMPOSE_HOST)
        ),
        *(
            CertLogin(identity, dev_dn(identity), NODES_GROUP, "datacenter")
            for identity in dev_node_identities(datacenters)
        ),
    )


def cert_logins_from_dir(tls_dir: Path, datacenters, node_certs: Path | None) -> list[CertLogin]:
    """Every certificate login of a network, from the scripts/make-dev-ca layout.

    clients/portal.pem (required) -> portal; clients/node.pem (the shared node certificate,
    optional) -> node; clients/admin.pem (optional) -> admin; brokers/<name>.pem (required)
    -> bridge-<name>, at the other end of its bridges (bridge-dc_<x> at the NOC, bridge-noc at
    the datacenter brokers); every ``node_certs``/*.pem (default clients/nodes) -> its CN,
    group nodes, at the datacenter brokers.
    """
    logins = []
    for name, group, where, required in (
        ("portal", "clients", "all", True),
        ("node", "servers", "datacenter", False),
        ("admin", "admins", "all", False),
    ):
        path = tls_dir / "clients" / f"{name}.pem"
        if path.is_file():
            logins.append(certificate_login(path, group, where, user=name))
        elif required:
            raise SystemExit(f"render.py: TLS material missing: {path}")
    for b in plan(datacenters, "127.0.0.1"):
        path = tls_dir / "brokers" / f"{b.name}.pem"
        if not path.is_file():
            raise SystemExit(
                f"render.py: TLS material missing: {path} (the certificate {b.name} shows "
                "the other end of its bridges: its login there)"
            )
        user = BRIDGE_CERT_USER.format(name=b.name)
        logins.append(certificate_login(path, "bridges", _bridge_at(b), user))
    node_dir = node_certs if node_certs is not None else tls_dir / NODE_CERTS_DIR
    if node_certs is not None and not node_dir.is_dir():
        raise SystemExit(f"render.py: --node-certs {node_dir}: not a directory")
    if node_dir.is_dir():
        logins += [
            certificate_login(p, NODES_GROUP, "datacenter") for p in sorted(node_dir.glob("*.pem"))
        ]
    check_cert_logins(logins)
    return logins


def check_cert_logins(logins) -> None:
    reserved = set(USERS)
    seen_users: dict[str, str] = {}
    seen_dns: dict[str, str] = {}
    for login in logins:
        where = login.cert or login.user
        if login.group == NODES_GROUP and (
            login.user in reserved or login.user.startswith(BRIDGE_CERT_USER.format(name=""))
        ):
            raise SystemExit(
                f"render.py: {where}: node identity {login.user!r} is a reserved login"
            )
        if login.user in seen_users:
            raise SystemExit(
                f"render.py: {where}: user {login.user!r} is also {seen_users[login.user]}"
            )
        if login.dn in seen_dns:
            raise SystemExit(
                f"render.py: {where}: subject {login.dn!r} is also {seen_dns[login.dn]}: one "
                "certificate subject per login"
            )
        seen_users[login.user] = seen_dns[login.dn] = where


@dataclass(frozen=True)
class TLS:
    """Where each broker finds its PKCS12 stores, their password, whether plain ports stay,
    and the certificate logins (subject DN -> user) the TLS ports accept.

    ``keystore`` may hold ``{name}`` (the broker's name); the files themselves are made by
    scripts/make-dev-ca (development) or by the operator from a production CA (docs/tls.md).
    """

    keystore: str
    truststore: str
    store_password: str
    tls_only: bool = False
    dir: str | None = None  # the TLS directory, for the manifest (clients find the CA there)
    logins: tuple[CertLogin, ...] = ()

    @classmethod
    def from_dir(
        cls,
        tls_dir: Path,
        store_password: str,
        tls_only: bool = False,
        datacenters=DEFAULT_DATACENTERS,
        node_certs: Path | None = None,
    ) -> TLS:
        """The scripts/make-dev-ca layout: brokers/<name>.p12 and truststore.p12, the client
        certificates in clients/ and the nodes' in clients/nodes/ (or ``node_certs``)."""
        tls_dir = tls_dir.resolve()
        return cls(
            keystore=str(tls_dir / "brokers" / "{name}.p12"),
            truststore=str(tls_dir / "truststore.p12"),
            store_password=store_password,
            tls_only=tls_only,
            dir=str(tls_dir),
            logins=tuple(cert_logins_from_dir(tls_dir, datacenters, node_certs)),
        )

    def manifest(self) -> dict:
        out = {"dir": self.dir, "tls_only": self.tls_only, "need_client_auth": True}
        if self.dir:
            base = Path(self.dir)
            out["ca_file"] = str(base / "ca.pem")
            out["clients"] = {
                name: {"cert": str(base / "clients" / f"{name}.pem"),
                       "key": str(base / "clients" / f"{name}.key")}
                for name in CLIENT_CERTS
            }  # fmt: skip
        # Per-node logins: identity -> its certificate (and the key beside it, when this
        # machine has it: the development CA's layout).
        out["nodes"] = {
            login.user: {
                "cert": login.cert,
                "key": _key_beside(login.cert),
                "dn": login.dn,
            }
            for login in self.logins
            if login.group == NODES_GROUP
        }
        return out

    def keystore_for(self, broker: Broker) -> str:
        return self.keystore.replace("{name}", broker.name)

    def missing(self, brokers: list[Broker]) -> list[str]:
        paths = [self.truststore, *(self.keystore_for(b) for b in brokers)]
        return [p for p in paths if not Path(p).is_file()]


def store_password(use_env: bool = True) -> str:
    value = os.environ.get(STORE_PASSWORD_ENV, "") if use_env else ""
    return value or DEV_STORE_PASSWORD


def password_env_name(user: str) -> str:
    return PASSWORD_ENV.format(user.upper())


def credentials(use_env: bool = True) -> dict[str, str]:
    """user -> password: the environment's value where set (and use_env), else the dev one."""
    out = {}
    for user, (_groups, dev) in USERS.items():
        value = os.environ.get(password_env_name(user), "") if use_env else ""
        out[user] = value or dev
    return out


def env_overrides() -> list[str]:
    return [password_env_name(u) for u in USERS if os.environ.get(password_env_name(u))]


def plan(
    datacenters, host: str, port_base: int = DEFAULT_PORT_BASE, tls: bool = False
) -> list[Broker]:
    names = [("noc", "noc", None, "activemq-noc")] + [
        (f"dc_{dc}", "datacenter", dc, f"activemq-dc-{dc}") for dc in datacenters
    ]
    return [
        Broker(
            name,
            role,
            dc,
            service,
            host,
            port_base + 3 + 10 * i,
            port_base + 6 + 10 * i,
            port_base + 4 + 10 * i if tls else None,
            port_base + 7 + 10 * i if tls else None,
        )
        for i, (name, role, dc, service) in enumerate(names)
    ]


def collectives(datacenters) -> list[str]:
    return ["mcollective"] + [f"dc_{dc}" for dc in datacenters]


def _entry(kind: str, dest: str, read: str, write: str, admin: str) -> str:
    return (
        f'              <authorizationEntry {kind}="{dest}" read="{read}" write="{write}" '
        f'admin="{admin}"/>'
    )


def broker_collectives(broker: Broker, datacenters) -> list[str]:
    """The collectives a broker carries: all at the NOC; a datacenter's own sub-collective and
    the main one at a datacenter broker, so dc_b's broker refuses dc_a's destinations."""
    if broker.role == "noc":
        return collectives(datacenters)
    return ["mcollective", f"dc_{broker.datacenter}"]


def authorization_entries(collective_names, per_node: bool = False) -> str:
    """The ACL lines. ``per_node`` (TLS renders): the group ``nodes`` (one login per node
    certificate) gets exactly the rights of ``servers`` (the shared ``node`` login)."""
    full = "admins,bridges"
    nodes = f"servers,{NODES_GROUP}" if per_node else "servers"
    lines = [
        "              <!-- admin and bridge: everything. -->",
        _entry("queue", ">", full, full, full),
        _entry("topic", ">", full, full, full),
        "              <!-- Advisories must be open to all (consumers, bridges). -->",
        _entry("topic", "ActiveMQ.Advisory.>", "everyone", "everyone", "everyone"),
        "              <!-- Portal-internal topics. -->",
        _entry("topic", "switchboard.channels.>", "clients", "clients", "clients"),
    ]
    for c in collective_names:
        lines += [
            f"              <!-- Collective {c}: requests (clients write, servers read),",
            "                   directed requests, replies (servers write, the client reads),",
            "                   registration queue (servers write, only the portal reads). -->",
            _entry("topic", f"{c}.*.agent", nodes, "clients", f"clients,{nodes}"),
            _entry("queue", f"{c}.nodes", nodes, "clients", f"clients,{nodes}"),
            _entry("queue", f"{c}.reply.>", "clients", f"clients,{nodes}", f"clients,{nodes}"),
            _entry("queue", f"{c}.registration", "clients", nodes, f"clients,{nodes}"),
        ]
    return "\n".join(lines)


def users_block(passwords: dict[str, str]) -> str:
    lines = []
    for user, (groups, _dev) in USERS.items():
        pw = quoteattr(passwords[user])
        lines.append(
            f'          <authenticationUser username="{user}" password={pw} groups="{groups}"/>'
        )
    return "\n".join(lines)


def authentication(passwords: dict[str, str], tls: TLS | None) -> str:
    """The authentication plugin: simple (passwords only) without TLS; JAAS with TLS, where
    a TLS port's client is whoever its certificate says (login.config, the .properties)."""
    if tls is None:
        return (
            '      <simpleAuthenticationPlugin anonymousAccessAllowed="false">\n'
            "        <users>\n"
            f"{users_block(passwords)}\n"
            "        </users>\n"
            "      </simpleAuthenticationPlugin>"
        )
    return (
        "      <!-- JAAS (conf/login.config). A TLS port's client is the user its certificate's\n"
        "           subject DN maps to in certificate-users.properties, whatever login it sends\n"
        "           (domain switchboard-certificate); a plain port's, and the vm:// end of a\n"
        "           bridge's, are checked by password in users.properties (switchboard-password).\n"
        "           Groups of both: groups.properties. The files are read again when they\n"
        "           change (reload=true): adding or removing a node needs no restart. -->\n"
        '      <jaasDualAuthenticationPlugin configuration="switchboard-password"\n'
        '                                    sslConfiguration="switchboard-certificate"/>'
    )


def _prop(text: str, key: bool = False) -> str:
    """``text`` escaped for a java.util.Properties file (ISO-8859-1, backslash escapes)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif (key and ch in "=: #!") or (ch == " " and i == 0) or (i == 0 and ch in "#!"):
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) > 126:  # a \u escape per UTF-16 unit
            units = ch.encode("utf-16-be")
            out += [f"\\u{units[j]:02x}{units[j + 1]:02x}" for j in range(0, len(units), 2)]
        else:
            out.append(ch)
    return "".join(out)


def _properties(header: str, pairs) -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{_prop(k, key=True)}={_prop(v)}" for k, v in pairs]
    return "\n".join(lines) + "\n"


def jaas_files(broker: Broker, passwords: dict[str, str], tls: TLS) -> dict[str, str]:
    """users.properties, certificate-users.properties and groups.properties for ``broker``."""
    generated = "GENERATED by deploy/activemq/render.py: re-render rather than edit"
    logins = [login for login in tls.logins if login.listed_at(broker)]
    groups: dict[str, list[str]] = {}
    for user, (user_groups, _dev) in USERS.items():
        for group in user_groups.split(","):
            groups.setdefault(group, []).append(user)
    for login in logins:
        for group in (login.group, "everyone"):
            if login.user not in groups.setdefault(group, []):
                groups[group].append(login.user)
    groups.setdefault(NODES_GROUP, [])
    return {
        PASSWORD_USERS_FILE: _properties(
            f"{generated}.\nPlain-port logins (and the bridges' vm:// ends): user=password.",
            [(user, passwords[user]) for user in USERS],
        ),
        CERTIFICATE_USERS_FILE: _properties(
            f"{generated}.\nTLS-port logins of broker {broker.name}: user=the subject DN of "
            "its client certificate,\nas Java prints it. A certificate from the CA that is "
            "not listed here is refused.\nNodes: user = certificate CN = node identity "
            "(datacenter brokers only).",
            [(login.user, login.dn) for login in logins],
        ),
        GROUPS_FILE: _properties(
            f"{generated}.\nGroups of both kinds of login; the authorizationPlugin grants "
            "to groups.\nnodes: one login per node certificate, the rights of servers.",
            [(group, ",".join(users)) for group, users in groups.items()],
        ),
    }


def _key_beside(cert: str | None) -> str | None:
    if not cert:
        return None
    key = Path(cert).with_suffix(".key")
    return str(key) if key.is_file() else None


def network_connectors(
    broker: Broker, noc: Broker, noc_address: str, datacenters, bridge_password: str
) -> str:
    if broker.role == "noc":
        return ""  # the datacenter brokers dial in; their bridges are duplex
    if noc.openwire_ssl_port:
        # The broker's sslContext serves the bridge too: its certificate is the client one,
        # and the NOC's certificate must name noc_address (ActiveMQ checks the host name).
        target = f"ssl://{noc_address}:{noc.openwire_ssl_port}"
    else:
        target = f"tcp://{noc_address}:{noc.openwire_port}"
    uri = f"static:({target})?{BRIDGE_RECONNECT}"
    # Another datacenter's sub-collective never crosses this link: its traffic goes only
    # between its own datacenter and the NOC (the portal's jobs in dc_<x>).
    others = [dc for dc in datacenters if dc != broker.datacenter]
    dc_topics = "".join(f'\n          <topic physicalName="dc_{dc}.>"/>' for dc in others)
    dc_queues = "".join(f'\n          <queue physicalName="dc_{dc}.>"/>' for dc in others)

    def connector(kind: str, conduit: str, excluded: str) -> str:
        return (
            f'      <networkConnector name="{broker.name}-noc-{kind}"\n'
            f"                        uri={quoteattr(uri)}\n"
            f'                        userName="bridge" password={quoteattr(bridge_password)}\n'
            f'                        duplex="true" conduitSubscriptions="{conduit}"\n'
            f'                        decreaseNetworkConsumerPriority="true" dynamicOnly="true"\n'
            f'                        networkTTL="2">\n'
            f"        <excludedDestinations>\n"
            f"{excluded}\n"
            f"        </excludedDestinations>\n"
            f"      </networkConnector>"
        )

    return (
        "\n"
        "    <!-- Star: two duplex bridges to the NOC, one for topics and one for queues.\n"
        "         Another datacenter's sub-collective (dc_<other>.) never crosses them. -->\n"
        "    <networkConnectors>\n"
        + connector("topics", "true", '          <queue physicalName=">"/>' + dc_topics)
        + "\n"
        + connector("queues", "false", '          <topic physicalName=">"/>' + dc_queues)
        + "\n    </networkConnectors>\n"
    )


def transport_connectors(broker: Broker, host: str) -> str:
    """The <transportConnector> lines: plain and/or TLS, by the ports the plan gave."""
    lines = []

    def add(comment: str, name: str, uri: str) -> None:
        lines.append(f"      <!-- {comment} -->")
        lines.append(f'      <transportConnector name="{name}" uri={quoteattr(uri)}/>')

    add(
        "In-VM: the local end of the bridges. Declared, so the broker owns it for good: the one "
        "ActiveMQ makes on demand is disposed when its last bridge drops, and when both "
        "bridges drop at once (the NOC restarting) a reconnecting bridge could find it "
        "half-disposed ('Server TransportAcceptListener is null') and never come back.",
        "vm",
        f"vm://{broker.name}",
    )
    if broker.openwire_port:
        add(
            "OpenWire: broker-to-broker bridges only.",
            "openwire",
            f"tcp://{host}:{broker.openwire_port}?{OPENWIRE_OPTIONS}",
        )
    if broker.openwire_ssl_port:
        add(
            "OpenWire over TLS: the bridges; the dialling broker shows its own certificate.",
            "openwire-ssl",
            f"ssl://{host}:{broker.openwire_ssl_port}?{NEED_CLIENT_AUTH}&{OPENWIRE_OPTIONS}",
        )
    if broker.stomp_port:
        add(
            "STOMP over NIO: portal and nodes. Heart-beat grace of 1.5 x the negotiated interval.",
            "stomp",
            f"stomp+nio://{host}:{broker.stomp_port}?{STOMP_OPTIONS}",
        )
    if broker.stomp_ssl_port:
        add(
            "STOMP over TLS (NIO): portal and nodes, each with a client certificate.",
            "stomp-ssl",
            f"stomp+nio+ssl://{host}:{broker.stomp_ssl_port}?{NEED_CLIENT_AUTH}&{STOMP_OPTIONS}",
        )
    return "\n".join(lines)


def ssl_context(broker: Broker, tls: TLS | None) -> str:
    if tls is None:
        return ""
    password = quoteattr(tls.store_password)
    return (
        "\n"
        "    <!-- TLS: this broker's key and certificate chain (key store) and the CA(s) it\n"
        "         trusts for client and bridge certificates (trust store), both PKCS12.\n"
        "         Rotation: docs/tls.md. -->\n"
        "    <sslContext>\n"
        f"      <sslContext keyStore={quoteattr(tls.keystore_for(broker))} "
        f'keyStorePassword={password} keyStoreType="pkcs12"\n'
        f"                  trustStore={quoteattr(tls.truststore)} "
        f'trustStorePassword={password} trustStoreType="pkcs12"/>\n'
        "    </sslContext>\n"
    )


def listening_text(broker: Broker) -> str:
    def pair(kind: str, plain: int | None, tls: int | None) -> str:
        parts = [f"{kind} {plain}"] if plain else []
        parts += [f"{kind} over TLS {tls}"] if tls else []
        return " and ".join(parts)

    return (
        pair("STOMP", broker.stomp_port, broker.stomp_ssl_port)
        + " (nodes, portal),\n  "
        + pair("OpenWire", broker.openwire_port, broker.openwire_ssl_port)
        + " (bridges)"
    )


def tls_text(tls: TLS | None) -> str:
    """The header's TLS paragraph (inside an XML comment: never two dashes in a row)."""
    if tls is None:
        return (
            "TLS: off; plain TCP, so keep these ports on loopback or a trusted network\n"
            "  (render.py renders TLS when given a TLS directory: docs/tls.md)."
        )
    if tls.tls_only:
        return (
            "TLS only: every connection shows a certificate from the CA in the trust store\n"
            "  (mutual TLS) as well as its login; the bridges dial the NOC over TLS."
        )
    return (
        "TLS: the TLS ports want a certificate from the CA in the trust store (mutual TLS)\n"
        "  as well as the login; the bridges dial the NOC over TLS. The plain ports stay open\n"
        "  for loopback development and tests: production renders them out (TLS only)."
    )


def validate(datacenters, passwords) -> None:
    if not datacenters:
        raise SystemExit("render.py: need at least one datacenter")
    for dc in datacenters:
        if not DC_NAME.match(dc):
            raise SystemExit(f"render.py: bad datacenter name {dc!r} (want [a-z][a-z0-9]*)")
    if len(set(datacenters)) != len(datacenters):
        raise SystemExit("render.py: duplicate datacenter names")
    for user, pw in passwords.items():
        # Spring's placeholder configurer would expand ${...}; keep passwords literal.
        if "${" in pw or any(ord(ch) < 32 for ch in pw):
            raise SystemExit(f"render.py: password for {user} contains '${{' or control chars")


def render(
    out: Path,
    datacenters,
    host: str,
    noc_address: str,
    port_base: int,
    passwords: dict[str, str],
    password_origin: str,
    tls: TLS | None = None,
) -> list[Broker]:
    validate(datacenters, passwords | ({"(key stores)": tls.store_password} if tls else {}))
    template = string.Template(TEMPLATE.read_text(encoding="utf-8"))
    brokers = plan(datacenters, host, port_base, tls=tls is not None)
    if tls is not None and tls.tls_only:
        for b in brokers:
            b.stomp_port = b.openwire_port = None
    noc = brokers[0]
    for b in brokers:
        role_text = (
            "NOC hub: the portal connects here"
            if b.role == "noc"
            else f"datacenter {b.datacenter}: its nodes connect here; bridged to the NOC"
        )
        xml = template.substitute(
            broker_name=b.name,
            role_text=role_text,
            host=host,
            listening=listening_text(b),
            tls_text=tls_text(tls),
            password_origin=password_origin,
            network_connectors=network_connectors(
                b, noc, noc_address, datacenters, passwords["bridge"]
            ),
            authentication=authentication(passwords, tls),
            authorization_entries=authorization_entries(
                broker_collectives(b, datacenters), per_node=tls is not None
            ),
            ssl_context=ssl_context(b, tls),
            transport_connectors=transport_connectors(b, host),
        )
        conf = out / b.name / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "activemq.xml").write_text(xml, encoding="utf-8")
        for name in LOG_CONFIGS:
            shutil.copyfile(HERE / name, conf / name)
        jaas = (LOGIN_CONFIG, PASSWORD_USERS_FILE, CERTIFICATE_USERS_FILE, GROUPS_FILE)
        if tls is None:
            for name in jaas:  # a re-render without TLS: no stale logins left behind
                (conf / name).unlink(missing_ok=True)
        else:
            shutil.copyfile(HERE / LOGIN_CONFIG, conf / LOGIN_CONFIG)
            for name, text in jaas_files(b, passwords, tls).items():
                write_atomically(conf / name, text)
    manifest = {
        "generated_by": "deploy/activemq/render.py",
        "datacenters": list(datacenters),
        "collectives": collectives(datacenters),
        "noc_address": noc_address,
        "brokers": [asdict(b) for b in brokers],
        "users": {u: g.split(",")[0] for u, (g, _dev) in USERS.items()},
        # TLS: who each broker's TLS ports let in, by certificate (user -> group); no DNs
        # of nodes here, they are under tls.nodes.
        "certificate_users": None
        if tls is None
        else {
            b.name: {login.user: login.group for login in tls.logins if login.listed_at(b)}
            for b in brokers
        },
        # Which brokers stamp JMSXUserID (all) and what a bridge does with it (keeps it).
        "jmsx_user_id": {"stamped_by": [b.name for b in brokers], "kept_across_bridges": True},
        # Where clients find the CA and their certificates (scripts/make-dev-ca's layout);
        # no password. None: no TLS.
        "tls": None if tls is None else tls.manifest(),
    }
    (out / "network.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return brokers


def write_atomically(path: Path, text: str) -> None:
    """Write by rename, so a broker re-reading the file (reload=true) never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="latin-1")
    tmp.replace(path)


def render_compose(out: Path) -> list[Broker]:
    return render(
        out,
        list(DEFAULT_DATACENTERS),
        COMPOSE_HOST,
        COMPOSE_NOC_ADDRESS,
        DEFAULT_PORT_BASE,
        credentials(use_env=False),
        "development defaults: production must re-render with real secrets",
        TLS(
            keystore=f"{COMPOSE_TLS_DIR}/broker.p12",
            truststore=f"{COMPOSE_TLS_DIR}/truststore.p12",
            store_password=DEV_STORE_PASSWORD,
            logins=dev_cert_logins(DEFAULT_DATACENTERS),
        ),
    )


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        render_compose(fresh)
        want, have = _tree(fresh), _tree(RENDERED) if RENDERED.is_dir() else set()
        problems = [f"missing: {p}" for p in sorted(want - have)]
        problems += [f"unexpected: {p}" for p in sorted(have - want)]
        problems += [
            f"stale: {p}"
            for p in sorted(want & have)
            if not filecmp.cmp(fresh / p, RENDERED / p, shallow=False)
        ]
    if problems:
        print("deploy/activemq/rendered is out of date:", *problems, sep="\n  ", file=sys.stderr)
        print("fix: python3 deploy/activemq/render.py --compose", file=sys.stderr)
        return 1
    print("deploy/activemq/rendered is up to date")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="write <out>/<broker>/conf/... here")
    mode.add_argument(
        "--compose",
        action="store_true",
        help="rewrite deploy/activemq/rendered/ (host 0.0.0.0, dev passwords)",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if deploy/activemq/rendered/ differs from a fresh render",
    )
    ap.add_argument(
        "--datacenters",
        default=",".join(DEFAULT_DATACENTERS),
        help="comma-separated datacenter names (default: a,b)",
    )
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    ap.add_argument(
        "--noc-address",
        default=None,
        help="address the bridges dial for the NOC (default: --host, or "
        "127.0.0.1 when --host is 0.0.0.0)",
    )
    ap.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help="STOMP = base+3+10*i, OpenWire = base+6+10*i, with TLS also STOMP over TLS = "
        "base+4+10*i, OpenWire over TLS = base+7+10*i (default 62610)",
    )
    ap.add_argument(
        "--tls-dir",
        type=Path,
        help="TLS material in scripts/make-dev-ca's layout (brokers/<name>.p12, "
        "truststore.p12, ca.pem, clients/): adds the TLS connectors, bridges over TLS",
    )
    ap.add_argument(
        "--tls-only",
        action="store_true",
        help="with --tls-dir: leave the plain STOMP and OpenWire ports out (production)",
    )
    ap.add_argument(
        "--node-certs",
        type=Path,
        help="with --tls-dir: a directory of node certificates (*.pem, CN = node identity), "
        "one login each at the datacenter brokers (default: <tls-dir>/clients/nodes)",
    )
    args = ap.parse_args(argv)
    if args.tls_only and not args.tls_dir:
        ap.error("--tls-only needs --tls-dir")
    if args.node_certs and not args.tls_dir:
        ap.error("--node-certs needs --tls-dir")

    if args.check:
        return check()
    if args.compose:
        ignored = env_overrides() + [STORE_PASSWORD_ENV] * bool(os.environ.get(STORE_PASSWORD_ENV))
        if ignored:
            print(
                "render.py: --compose ignores "
                + ", ".join(ignored)
                + " (the committed copies keep development passwords)",
                file=sys.stderr,
            )
        RENDERED.mkdir(parents=True, exist_ok=True)
        for child in RENDERED.iterdir():  # drop brokers of datacenters no longer listed
            if child.is_dir():
                shutil.rmtree(child)
        render_compose(RENDERED)
        print(f"rendered {RENDERED}")
        return 0

    datacenters = [d.strip() for d in args.datacenters.split(",") if d.strip()]
    noc_address = args.noc_address or ("127.0.0.1" if args.host == COMPOSE_HOST else args.host)
    overridden = env_overrides()
    origin = (
        "set from " + ", ".join(overridden) + " where given, development defaults otherwise"
        if overridden
        else "development defaults: production must re-render with real secrets"
    )
    tls = None
    if args.tls_dir:
        tls = TLS.from_dir(
            args.tls_dir, store_password(), args.tls_only, datacenters, args.node_certs
        )
        missing = tls.missing(plan(datacenters, args.host, args.port_base))
        if missing:
            raise SystemExit(
                "render.py: TLS material missing: " + ", ".join(missing)
                + f" (scripts/make-dev-ca {args.tls_dir} makes a development set)"
            )  # fmt: skip
    brokers = render(
        args.out, datacenters, args.host, noc_address, args.port_base, credentials(), origin, tls
    )
    print(
        f"rendered {len(brokers)} brokers into {args.out}: " + ", ".join(map(ports_text, brokers))
    )
    if tls is not None:
        nodes = sum(login.group == NODES_GROUP for login in tls.logins)
        print(f"certificate logins: {len(tls.logins)} ({nodes} per-node) at the TLS ports")
    return 0


def ports_text(b: Broker) -> str:
    ports = [
        f"{kind} {port}"
        for kind, port in (
            ("stomp", b.stomp_port),
            ("stomp+ssl", b.stomp_ssl_port),
            ("openwire", b.openwire_port),
            ("openwire+ssl", b.openwire_ssl_port),
        )
        if port
    ]
    return f"{b.name} " + " ".join(ports)


if __name__ == "__main__":
    sys.exit(main())
