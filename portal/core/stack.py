"""The processes of a running Switchboard: broker, Celery worker, simulated nodes, ASGI server.

``manage.py demo`` starts all four for the embedded profile; the integration tests start the
ones a test needs, against whichever profile the environment selects. ``wrap`` is put before
a child's command line, e.g. ``("ip", "netns", "exec", NAME)`` to run it in a network
namespace (tests/integration/netns.py).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from portal.core.supervisor import Child, Supervisor

PYTHON = sys.executable
BASE_DIR = Path(__file__).resolve().parent.parent.parent


def demo_enrolment_token(var_dir: Path) -> str:
    """The demo's enrolment token, kept in ``<var>/keys/enrolment-token`` (mode 0600) so a
    restarted demo's nodes keep enrolling; made on first use."""
    path = var_dir / "keys" / "enrolment-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def start_embedded_broker(sup: Supervisor, host: str, port: int) -> Child:
    """The pure-Python STOMP broker of the embedded profile, listening on ``host:port``."""
    child = sup.start(
        "broker",
        [PYTHON, "-m", "portal.core.embedded_broker", "--host", host, "--port", str(port)],
    )
    sup.wait_for_port(child, host, port)
    return child


def start_worker(
    sup: Supervisor, env: dict[str, str] | None = None, wrap: Sequence[str] = ()
) -> Child:
    """A real Celery worker for the portal's tasks (threads: each job mostly waits on I/O)."""
    child = sup.start(
        "worker",
        [
            *wrap,
            PYTHON,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
    )
    sup.wait_for_log(child, "ready.")
    return child


def start_registration_consumer(
    sup: Supervisor,
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    name: str = "registrations",
) -> Child:
    """Keeps the node inventory up to date from the nodes' registration messages; several
    may run at once (each its own ``name``), sharing the registration queue."""
    child = sup.start(
        name,
        [*wrap, PYTHON, str(BASE_DIR / "manage.py"), "consume_registrations"],
        env=env,
    )
    sup.wait_for_log(child, "registration consumer ready")
    return child


def start_simulator(
    sup: Supervisor,
    datacenters: dict[str, str],
    count: int,
    *,
    seed: int = 1,
    login: str = "",
    passcode: str = "",
    trusted_key: Path | None = None,
    identity_prefix: str = "",
    processes: int = 1,
    worker_threads: int = 0,
    sub_collectives: bool = False,
    wrap: Sequence[str] = (),
    enrolment_token: str = "",
) -> Child:
    """``count`` simulated nodes split between ``datacenters`` (name -> its broker list).

    Each node has its own STOMP connection to its datacenter's brokers only. With
    ``trusted_key`` (the portal's public key) they obey only requests the portal signed.
    ``processes`` > 1 splits the same fleet over that many shard processes (one simulator
    process carries about 1,000 nodes); they form one child, stopped together.
    ``worker_threads`` > 0 gives each process one action pool of that size instead of a pool
    per node (a thread per node fewer). ``enrolment_token``: the nodes prove it in their
    registrations, for a portal that auto-accepts by token (SWITCHBOARD_AUTO_ACCEPT=token).
    """
    argv = [*wrap, PYTHON, "-m", "agents.simulator", "--count", str(count), "--seed", str(seed)]
    for name, brokers in datacenters.items():
        argv += ["--dc", f"{name}={brokers}"]
    if identity_prefix:
        argv += ["--identity-prefix", identity_prefix]
    if processes > 1:
        argv += ["--processes", str(processes)]
    if worker_threads > 0:
        argv += ["--worker-threads", str(worker_threads)]
    if sub_collectives:
        argv.append("--sub-collectives")  # each node also joins dc_<its datacenter>
    if trusted_key is not None:
        argv += ["--trusted-key", str(trusted_key)]
    # The credentials go through the environment, which the simulator reads, not argv.
    env = {"SWITCHBOARD_NODE_LOGIN": login, "SWITCHBOARD_NODE_PASSCODE": passcode} if login else {}
    if enrolment_token:
        env["SWITCHBOARD_ENROLMENT_TOKEN"] = enrolment_token
    child = sup.start("nodes", argv, env=env)
    # About 7 s per 1,000 nodes on 2 cores when idle; leave room for a loaded machine.
    sup.wait_for_log(child, "nodes connected", timeout=max(120.0, count * 0.06))
    return child


def start_asgi(
    sup: Supervisor,
    host: str,
    port: int,
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
) -> Child:
    """The ASGI server (daphne) for pages, the API and WebSockets.

    Readiness is a connection to ``host:port`` from the calling thread's network namespace.
    """
    child = sup.start(
        "asgi",
        [*wrap, PYTHON, "-m", "daphne", "-b", host, "-p", str(port), "portal.asgi:application"],
        env=env,
    )
    sup.wait_for_port(child, host, port)
    return child
