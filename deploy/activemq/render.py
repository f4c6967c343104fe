#!/usr/bin/env python3
"""Render the Switchboard ActiveMQ network-of-brokers configs (stdlib only).

One NOC broker ``noc`` plus one broker ``dc_<name>`` per datacenter, in a star: each
datacenter broker opens two duplex bridges (topics, queues) to the NOC.

    render.py --out var/activemq                      # loopback configs (scripts/brokers)
    render.py --compose                               # rewrite deploy/activemq/rendered/
    render.py --check                                 # exit 1 if rendered/ is stale
    render.py --out DIR --host 0.0.0.0 --noc-address activemq-noc --datacenters a,b,c

Port plan: broker i (noc = 0, then the datacenters in order) gets STOMP
``port_base + 3 + 10*i`` and OpenWire ``port_base + 6 + 10*i`` (port_base 62610:
noc 62613/62616, dc_a 62623/62626, dc_b 62633/62636, ...).

Passwords default to development values; override them with the environment variables
SWITCHBOARD_AMQ_{PORTAL,NODE,BRIDGE,ADMIN}_PASSWORD. ``--compose`` and ``--check`` always
use the development values, so real secrets never land in the committed copies: production
renders into its own directory with ``--out`` and the variables set.
"""

from __future__ import annotations

import argparse
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
RENDERED = HERE / "rendered"

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

DC_NAME = re.compile(r"^[a-z][a-z0-9]*$")
BRIDGE_RECONNECT = "initialReconnectDelay=200&maxReconnectDelay=5000&useExponentialBackOff=true"


@dataclass
class Broker:
    name: str
    role: str  # "noc" or "datacenter"
    datacenter: str | None
    service: str  # docker-compose service name
    host: str  # listen address
    stomp_port: int
    openwire_port: int


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


def plan(datacenters, host: str, port_base: int = DEFAULT_PORT_BASE) -> list[Broker]:
    brokers = [Broker("noc", "noc", None, "activemq-noc", host, port_base + 3, port_base + 6)]
    for i, dc in enumerate(datacenters, start=1):
        brokers.append(
            Broker(
                f"dc_{dc}",
                "datacenter",
                dc,
                f"activemq-dc-{dc}",
                host,
                port_base + 3 + 10 * i,
                port_base + 6 + 10 * i,
            )
        )
    return brokers


def collectives(datacenters) -> list[str]:
    return ["mcollective"] + [f"dc_{dc}" for dc in datacenters]


def _entry(kind: str, dest: str, read: str, write: str, admin: str) -> str:
    return (
        f'              <authorizationEntry {kind}="{dest}" read="{read}" write="{write}" '
        f'admin="{admin}"/>'
    )


def authorization_entries(datacenters) -> str:
    full = "admins,bridges"
    lines = [
        "              <!-- admin and bridge: everything. -->",
        _entry("queue", ">", full, full, full),
        _entry("topic", ">", full, full, full),
        "              <!-- Advisories must be open to all (consumers, bridges). -->",
        _entry("topic", "ActiveMQ.Advisory.>", "everyone", "everyone", "everyone"),
        "              <!-- Portal-internal topics. -->",
        _entry("topic", "switchboard.channels.>", "clients", "clients", "clients"),
    ]
    for c in collectives(datacenters):
        lines += [
            f"              <!-- Collective {c}: requests (clients write, servers read),",
            "                   directed requests, replies (servers write, the client reads),",
            "                   registration (servers write, the client reads). -->",
            _entry("topic", f"{c}.*.agent", "servers", "clients", "clients,servers"),
            _entry("queue", f"{c}.nodes", "servers", "clients", "clients,servers"),
            _entry("queue", f"{c}.reply.>", "clients", "clients,servers", "clients,servers"),
            _entry("topic", f"{c}.registration.agent", "clients", "servers", "clients,servers"),
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


def network_connectors(
    broker: Broker, noc: Broker, noc_address: str, datacenters, bridge_password: str
) -> str:
    if broker.role == "noc":
        return ""  # the datacenter brokers dial in; their bridges are duplex
    uri = f"static:(tcp://{noc_address}:{noc.openwire_port})?{BRIDGE_RECONNECT}"
    dc_topics = "\n".join(f'          <topic physicalName="dc_{dc}.>"/>' for dc in datacenters)
    dc_queues = "\n".join(f'          <queue physicalName="dc_{dc}.>"/>' for dc in datacenters)

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
        "         Datacenter sub-collectives (dc_*.) never cross a bridge. -->\n"
        "    <networkConnectors>\n"
        + connector("topics", "true", '          <queue physicalName=">"/>\n' + dc_topics)
        + "\n"
        + connector("queues", "false", '          <topic physicalName=">"/>\n' + dc_queues)
        + "\n    </networkConnectors>\n"
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
) -> list[Broker]:
    validate(datacenters, passwords)
    template = string.Template(TEMPLATE.read_text(encoding="utf-8"))
    brokers = plan(datacenters, host, port_base)
    noc = brokers[0]
    entries = authorization_entries(datacenters)
    users = users_block(passwords)
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
            stomp_port=b.stomp_port,
            openwire_port=b.openwire_port,
            password_origin=password_origin,
            network_connectors=network_connectors(
                b, noc, noc_address, datacenters, passwords["bridge"]
            ),
            users=users,
            authorization_entries=entries,
        )
        conf = out / b.name / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "activemq.xml").write_text(xml, encoding="utf-8")
        for name in LOG_CONFIGS:
            shutil.copyfile(HERE / name, conf / name)
    manifest = {
        "generated_by": "deploy/activemq/render.py",
        "datacenters": list(datacenters),
        "collectives": collectives(datacenters),
        "noc_address": noc_address,
        "brokers": [asdict(b) for b in brokers],
        "users": {u: g.split(",")[0] for u, (g, _dev) in USERS.items()},
    }
    (out / "network.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return brokers


def render_compose(out: Path) -> list[Broker]:
    return render(
        out,
        list(DEFAULT_DATACENTERS),
        COMPOSE_HOST,
        COMPOSE_NOC_ADDRESS,
        DEFAULT_PORT_BASE,
        credentials(use_env=False),
        "development defaults: production must re-render with real secrets",
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
        help="STOMP = base+3+10*i, OpenWire = base+6+10*i (default 62610)",
    )
    args = ap.parse_args(argv)

    if args.check:
        return check()
    if args.compose:
        if env_overrides():
            print(
                "render.py: --compose ignores "
                + ", ".join(env_overrides())
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
    brokers = render(
        args.out, datacenters, args.host, noc_address, args.port_base, credentials(), origin
    )
    print(
        f"rendered {len(brokers)} brokers into {args.out}: "
        + ", ".join(f"{b.name} stomp {b.stomp_port} openwire {b.openwire_port}" for b in brokers)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
