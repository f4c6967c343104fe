"""Where the fan-out runs: the ActiveMQ network as deployed, or the embedded profile.

Both are started with the test harness (``harness.stacks``); what the measurements need to
know about the one running is a ``BenchStack``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from agents.protocol.security import SigningKey
from bench.fanout.common import BENCH_USER, log
from harness.activemq import ACTIVEMQ_PORTS, broker_pid, brokers, network_up
from harness.portal import PortalStack
from harness.stacks import activemq_portal, embedded_portal, portal_public_key
from portal.core.supervisor import Supervisor

STACKS = ("activemq", "embedded")
# Not db 7: the integration tests of other checkouts flush that one.
REDIS_URL = "redis://127.0.0.1:6379/13"
# Threads left for the brokers (a reconnect storm took each to ~3,000), the portal and others.
ACTIVEMQ_THREAD_HEADROOM = 6000
# The portal and the embedded broker's own; the broker's thread per connection is counted
# with the nodes (EMBEDDED_BROKER_THREADS_PER_NODE).
EMBEDDED_THREAD_HEADROOM = 1000


@dataclass
class BenchStack:
    """A running stack as the measurements see it: its processes, portal, brokers, key."""

    name: str  # one of STACKS
    sup: Supervisor
    portal: PortalStack
    key: SigningKey  # the portal's signing key: the raw client seals with it
    trusted_key: Path  # its public half, which the nodes trust
    noc: str  # host:port of the broker the portal and the raw client use
    datacenters: dict[str, str]  # datacenter -> its nodes' brokers
    portal_login: tuple[str | None, str | None]
    node_login: tuple[str, str]
    database: str  # the PostgreSQL database (its backends' CPU is counted), "" for SQLite
    thread_headroom: int
    broker_threads_per_node: int
    discovery: float  # the broadcast discovery timeout the worker runs with now

    def broker_pids(self) -> dict[str, int]:
        """The brokers' processes by name: ActiveMQ's from their pid files, or the embedded
        broker (a child of ours)."""
        if self.name == "embedded":
            return {"broker": child_pid(self.sup, "broker")}
        pids = {name: broker_pid(name) for name in ("noc", "dc_a", "dc_b")}
        return {name: pid for name, pid in pids.items() if pid}


def child_pid(sup: Supervisor, name: str) -> int:
    """The pid of the supervised child ``name`` (the leader of its process group)."""
    return next(c.process.pid for c in sup.children if c.name == name and c.process)


@contextmanager
def activemq_network() -> Iterator[None]:
    """The local ActiveMQ network: reused when it answers, else started and stopped after."""
    if network_up():
        ports = "/".join(str(port) for port in ACTIVEMQ_PORTS.values())
        log(f"brokers already answer on {ports}: reusing them")
        yield
        return
    log("starting the broker network: scripts/brokers up")
    brokers("up", timeout=900)
    try:
        yield
    finally:
        brokers("down", check=False)


@contextmanager
def open_stack(name: str, tmp: Path, discovery: float) -> Iterator[BenchStack]:
    """Brokers, database and portal (worker, registration consumer, daphne) for ``name``,
    logged in as BENCH_USER; the portal's logs go to ``tmp / "logs"``. All stopped and
    dropped on exit."""
    env = {
        "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discovery or 2.0),
        # As deployed: DEBUG (the development default) wraps every query in Django's
        # debug cursor and keeps it in memory for the worker's lifetime.
        "DEBUG": "false",
    }
    log(f"starting the portal on the {name} stack (logs in {tmp / 'logs'})")
    with ExitStack() as cleanup:
        if name == "activemq":
            cleanup.enter_context(activemq_network())
            cleanup.callback(lambda: redis.Redis.from_url(REDIS_URL).flushdb())
            sup = cleanup.enter_context(Supervisor(tmp / "logs"))
            portal = cleanup.enter_context(
                activemq_portal(sup, tmp, REDIS_URL, env, users=(BENCH_USER,),
                                database_prefix="switchboard_bench")
            )  # fmt: skip
            # The processes stop before their database is dropped (callbacks run last first).
            cleanup.callback(sup.stop)
            noc = portal.env["STOMP_BROKERS"]
            datacenters = {dc: f"127.0.0.1:{ACTIVEMQ_PORTS[f'dc_{dc}']}" for dc in ("a", "b")}
            portal_login: tuple[str | None, str | None] = ("portal", "portal-secret")
            node_login = ("node", "node-secret")
            database = portal.env["DATABASE_URL"].rsplit("/", 1)[1]
            headroom, per_node = ACTIVEMQ_THREAD_HEADROOM, 0
        elif name == "embedded":
            sup = cleanup.enter_context(Supervisor(tmp / "logs"))
            portal = embedded_portal(sup, tmp, env, users=(BENCH_USER,))
            noc = portal.env["STOMP_BROKERS"]
            datacenters = {"a": noc, "b": noc}
            portal_login, node_login, database = (None, None), ("", ""), ""
            headroom, per_node = EMBEDDED_THREAD_HEADROOM, 1
        else:
            raise ValueError(f"unknown stack {name!r}: one of {', '.join(STACKS)}")
        log(f"portal up at {portal.base_url} ({portal.env['DATABASE_URL']})")
        portal.login(BENCH_USER)
        trusted_key = portal_public_key(tmp)
        yield BenchStack(
            name=name,
            sup=sup,
            portal=portal,
            key=SigningKey.load(tmp / "keys" / "portal.pem"),
            trusted_key=trusted_key,
            noc=noc,
            datacenters=datacenters,
            portal_login=portal_login,
            node_login=node_login,
            database=database,
            thread_headroom=headroom,
            broker_threads_per_node=per_node,
            discovery=discovery,
        )
