"""The local ActiveMQ network (``scripts/brokers up``): its ports, and driving it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.services import port_open, require_service

BASE_DIR = Path(__file__).resolve().parent.parent
# deploy/activemq/render.py's port plan: the portal's NOC broker and one per datacenter.
ACTIVEMQ_PORTS = {"noc": 62613, "dc_a": 62623, "dc_b": 62633}
NOC, DC_A, DC_B = (("127.0.0.1", ACTIVEMQ_PORTS[name]) for name in ("noc", "dc_a", "dc_b"))
# Where scripts/brokers keeps each broker's pid file, log and data: <dir>/<name>/.
BROKER_DIR = BASE_DIR / "var" / "activemq"


def network_up() -> bool:
    """The three brokers' STOMP ports all answer."""
    return all(port_open(*address) for address in (NOC, DC_A, DC_B))


def require_network() -> None:
    """Skip (or, in CI, fail) unless the three brokers of the local network answer."""
    require_service("The ActiveMQ network", network_up(), "start it with `scripts/brokers up`")


def brokers(*args: str, check: bool = True, timeout: float = 180) -> int:
    """``scripts/brokers ARGS`` (up, down, kill, start, probe...); its exit code."""
    command = [str(BASE_DIR / "scripts" / "brokers"), *args]
    return subprocess.run(command, cwd=BASE_DIR, check=check, timeout=timeout).returncode


def broker_pid(name: str) -> int:
    """The running broker ``name``'s pid (noc, dc_a, dc_b) from its pid file; 0 if none."""
    try:
        return int((BROKER_DIR / name / "activemq.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
