"""The local ActiveMQ network (``scripts/brokers up``): its ports, its network.json, driving it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stomp

from agents.protocol import connect, registration_queue
from agents.protocol.transport import TLSConfig
from harness.services import port_open, require_service

BASE_DIR = Path(__file__).resolve().parent.parent
# The port base the network was started with (`scripts/brokers up --port-base N`), so tests
# can run against a second network beside the default one.
PORT_BASE_ENV = "SWITCHBOARD_ACTIVEMQ_PORT_BASE"
DEFAULT_PORT_BASE = 62610  # deploy/activemq/render.py's default


def activemq_port_base() -> int:
    """``$SWITCHBOARD_ACTIVEMQ_PORT_BASE``, else render.py's default 62610."""
    value = os.environ.get(PORT_BASE_ENV) or str(DEFAULT_PORT_BASE)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{PORT_BASE_ENV}={value!r} is not a port number") from None


# deploy/activemq/render.py's port plan: broker i (the portal's NOC broker, then one per
# datacenter) has plain STOMP on base + 3 + 10*i (62613, 62623, 62633 by default).
ACTIVEMQ_PORTS = {
    name: activemq_port_base() + 3 + 10 * i for i, name in enumerate(("noc", "dc_a", "dc_b"))
}
NOC, DC_A, DC_B = (("127.0.0.1", ACTIVEMQ_PORTS[name]) for name in ("noc", "dc_a", "dc_b"))
# Where scripts/brokers keeps each broker's pid file, log and data: <dir>/<name>/.
BROKER_DIR = BASE_DIR / "var" / "activemq"
# Another network's directory (`scripts/brokers up --dir DIR --port-base N`) for the tests
# that read the network from its description.
BROKERS_DIR_ENV = "SWITCHBOARD_BROKERS_DIR"


def network_up() -> bool:
    """The three brokers' STOMP ports all answer."""
    return all(port_open(*address) for address in (NOC, DC_A, DC_B))


def require_network() -> None:
    """Skip (or, in CI, fail) unless the three brokers of the local network answer."""
    require_service("The ActiveMQ network", network_up(), "start it with `scripts/brokers up`")


def brokers_dir() -> Path:
    """The network's directory: ``$SWITCHBOARD_BROKERS_DIR``, else var/activemq."""
    return Path(os.environ.get(BROKERS_DIR_ENV) or BROKER_DIR)


def network_json(directory: Path | None = None) -> Path:
    """Where deploy/activemq/render.py describes the network of ``directory`` (default
    ``brokers_dir()``)."""
    return (directory if directory is not None else brokers_dir()) / "network.json"


@dataclass(frozen=True)
class NetworkDescription:
    """A network's ``network.json`` (deploy/activemq/render.py): its brokers' ports and, with
    TLS, where the CA and the client and per-node certificates are."""

    directory: Path
    brokers: dict[str, dict[str, Any]]  # name (noc, dc_a...) -> render.py's Broker fields
    tls: dict[str, Any] | None  # None: rendered without TLS

    def has_stomp(self, broker: str, *, tls: bool = True) -> bool:
        """``broker`` has a STOMP over TLS port (with ``tls=False``: a plain STOMP port)."""
        return bool(self.brokers[broker]["stomp_ssl_port" if tls else "stomp_port"])

    def stomp(self, broker: str, *, tls: bool = True) -> tuple[str, int]:
        """``broker``'s STOMP over TLS (with ``tls=False``: plain STOMP) address on the
        loopback; LookupError when it has no such port (no TLS, or TLS only)."""
        port = self.brokers[broker]["stomp_ssl_port" if tls else "stomp_port"]
        if not port:
            raise LookupError(f"{broker} has no {'TLS' if tls else 'plain'} STOMP port")
        return ("127.0.0.1", port)

    @property
    def tls_ready(self) -> bool:
        """Rendered with TLS, and the CA certificate is there (scripts/make-dev-ca ran)."""
        ca_file = (self.tls or {}).get("ca_file")
        return bool(ca_file) and Path(ca_file).exists()

    @property
    def ca_file(self) -> str:
        """The CA that signed the brokers' and the clients' certificates."""
        assert self.tls is not None, "rendered without TLS"
        return str(self.tls["ca_file"])

    @property
    def tls_dir(self) -> Path:
        """The TLS directory (scripts/make-dev-ca's layout: ca.pem, ca.key, clients/...)."""
        assert self.tls is not None, "rendered without TLS"
        return Path(self.tls["dir"])

    def clients(self) -> dict[str, TLSConfig]:
        """Each shared client login (portal, node, admin) -> its TLS material."""
        assert self.tls is not None, "rendered without TLS"
        return {
            login: TLSConfig(self.ca_file, files["cert"], files["key"])
            for login, files in self.tls["clients"].items()
        }

    def client_tls(self, login: str) -> TLSConfig:
        """The TLS material of the shared client login ``login`` (portal, node, admin)."""
        return self.clients()[login]

    def nodes(self) -> dict[str, TLSConfig]:
        """Each per-node certificate login whose key is on this machine -> its TLS material."""
        if self.tls is None or not self.tls.get("ca_file"):
            return {}
        return {
            identity: TLSConfig(self.ca_file, files["cert"], files["key"])
            for identity, files in (self.tls.get("nodes") or {}).items()
            if files.get("key")
        }

    def has_nodes(self, *identities: str) -> bool:
        """Every one of ``identities`` has a per-node certificate and key."""
        return set(identities) <= set(self.nodes())


def network_description(directory: Path | None = None) -> NetworkDescription | None:
    """The network described in ``directory`` (default ``brokers_dir()``); None when it was
    never rendered there (no network.json)."""
    path = network_json(directory)
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return NetworkDescription(
        directory=path.parent,
        brokers={broker["name"]: broker for broker in manifest["brokers"]},
        tls=manifest.get("tls"),
    )


def brokers(*args: str, check: bool = True, timeout: float = 180) -> int:
    """``scripts/brokers ARGS --dir brokers_dir()`` (up, down, kill, start, probe...); its
    exit code."""
    command = [str(BASE_DIR / "scripts" / "brokers"), *args, "--dir", str(brokers_dir())]
    return subprocess.run(command, cwd=BASE_DIR, check=check, timeout=timeout).returncode


def broker_pid(name: str) -> int:
    """The running broker ``name``'s pid (noc, dc_a, dc_b) from its pid file; 0 if none."""
    try:
        return int((brokers_dir() / name / "activemq.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def drain_registrations(collective: str = "mcollective", quiet: float = 1.5) -> int:
    """Take and drop whatever waits in the network's registration queue; how many.

    Registrations are a queue: one a test leaves behind (a forged one nobody consumed, a
    fleet's last round) waits for the next consumer and would count in that test. A stack
    starts its consumer after this. Reading at the NOC draws in what waits at the datacenter
    brokers too (the subscription's demand crosses the bridges), so it stops only after
    ``quiet`` seconds without a message.
    """
    taken = threading.Event()
    count = 0

    class _Drop(stomp.ConnectionListener):
        def on_message(self, frame: Any) -> None:
            nonlocal count
            count += 1
            taken.set()

    conn = connect([NOC], "portal", "portal-secret", listeners={"drop": _Drop()})
    try:
        conn.subscribe(registration_queue(collective), id="drain", ack="auto")
        while taken.wait(quiet):
            taken.clear()
    finally:
        conn.disconnect()
    return count
