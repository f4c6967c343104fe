"""Running Switchboards for black-box tests and benchmarks: real processes, real connections.

Each stack gets its own var/ directory, ports and database, so runs never see each other's
state. The processes are the demo's (``portal.core.stack``); what is added here is a known
password, an API token and the profile's settings. ``harness.portal.PortalStack`` is how the
caller then talks to the stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from agents.protocol.security import SigningKey, public_path
from harness.activemq import ACTIVEMQ_PORTS, drain_registrations, require_network
from harness.databases import postgres_database
from harness.portal import PASSWORD, PortalStack
from harness.services import free_port, port_open, require_service
from portal.core import stack
from portal.core.supervisor import Child, Supervisor

# The stacks auto-accept nodes that prove this token (SWITCHBOARD_AUTO_ACCEPT=token), as the
# demo does; the enrolment tests start their portal without it.
ENROLMENT_TOKEN = "integration-enrolment-token"  # noqa: S105 - throwaway stacks only


def portal_public_key(var_dir: Path) -> Path:
    """The public half of the portal key a stack in ``var_dir`` signs with (made if missing)."""
    private = var_dir / "keys" / "portal.pem"
    SigningKey.load_or_create(private)
    return public_path(private)


def start_portal(
    sup: Supervisor, var_dir: Path, env: dict[str, str], users: tuple[str, ...] = ("noc",)
) -> PortalStack:
    """Migrate, create users with a known password, start a worker and the ASGI server."""
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "SWITCHBOARD_DISCOVERY_TIMEOUT": "1.5",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SWITCHBOARD_AUTO_ACCEPT": "token",
        "SWITCHBOARD_ENROLMENT_TOKEN": ENROLMENT_TOKEN,
        **env,
    }
    env.setdefault("DATABASE_URL", f"sqlite:///{var_dir / 'switchboard.sqlite3'}")
    portal = PortalStack(f"http://127.0.0.1:{port}", env, var_dir, sup)
    portal.manage("migrate", "--noinput")
    # The demo accounts, with a known password instead of random ones.
    portal.env["SWITCHBOARD_DEMO_PASSWORD"] = PASSWORD
    portal.manage("seed_demo")
    portal.token = portal.manage("issue_token", users[0]).strip()
    stack.start_worker(sup, env=env)
    stack.start_registration_consumer(sup, env=env)
    stack.start_asgi(sup, "127.0.0.1", port, env=env)
    return portal


def embedded_portal(
    sup: Supervisor,
    var_dir: Path,
    env: dict[str, str] | None = None,
    users: tuple[str, ...] = ("noc",),
) -> PortalStack:
    """The embedded profile without nodes: the embedded STOMP broker on a free port of
    127.0.0.1 (``portal.env["STOMP_BROKERS"]``), SQLite, no Redis, and the portal on them."""
    stomp_port = free_port()
    stack.start_embedded_broker(sup, "127.0.0.1", stomp_port)
    env = {"STOMP_BROKERS": f"127.0.0.1:{stomp_port}", "REDIS_URL": "", **(env or {})}
    return start_portal(sup, var_dir, env, users)


def embedded_stack(
    tmp: Path, nodes: int, users: tuple[str, ...] = ("noc",)
) -> Iterator[PortalStack]:
    """The embedded profile on 127.0.0.1: broker, portal (worker, registration consumer,
    daphne) and ``nodes`` simulated nodes in two datacenters; all stopped on exit."""
    with Supervisor(tmp / "logs") as sup:
        # The portal first: its registration consumer must listen when the nodes register.
        portal = embedded_portal(sup, tmp, users=users)
        brokers = portal.env["STOMP_BROKERS"]
        stack.start_simulator(
            sup,
            {"a": brokers, "b": brokers},
            nodes,
            seed=7,
            trusted_key=portal_public_key(tmp),
            sub_collectives=True,
            enrolment_token=ENROLMENT_TOKEN,
        )
        portal.wait_for_inventory(nodes)
        yield portal


# The shared login of the simulated nodes on the local ActiveMQ network's plain ports.
NODE_LOGIN, NODE_PASSCODE = "node", "node-secret"


def activemq_fleet(
    sup: Supervisor, count: int, *, seed: int, trusted_key: Path, **options: Any
) -> Child:
    """``count`` simulated nodes on the local ActiveMQ network, datacenter a on dc_a's broker
    and b on dc_b's, logged in as the shared ``node``; ``options`` as ``stack.start_simulator``
    takes them (identity_prefix, enrolment_token, sub_collectives...)."""
    return stack.start_simulator(
        sup,
        {name: f"127.0.0.1:{ACTIVEMQ_PORTS[f'dc_{name}']}" for name in ("a", "b")},
        count,
        seed=seed,
        login=NODE_LOGIN,
        passcode=NODE_PASSCODE,
        trusted_key=trusted_key,
        **options,
    )


def require_production_services() -> None:
    """The ActiveMQ network, PostgreSQL and Redis, as ``activemq_portal`` needs them."""
    require_network()
    require_service("PostgreSQL", port_open("127.0.0.1", 5432), "expected on 127.0.0.1:5432")
    require_service("Redis", port_open("127.0.0.1", 6379), "expected on 127.0.0.1:6379")


@contextmanager
def activemq_portal(
    sup: Supervisor,
    tmp: Path,
    redis_url: str,
    env: dict[str, str] | None = None,
    users: tuple[str, ...] = ("noc",),
    database_prefix: str = "switchboard_it",
) -> Iterator[PortalStack]:
    """The production parts: a portal on the NOC broker with a fresh PostgreSQL database and
    Redis database ``redis_url`` (flushed), yielded once started; the database is dropped after.

    The caller checks that the services run (``require_production_services``) and starts
    the nodes.
    """
    with postgres_database(database_prefix) as database_url:
        redis.Redis.from_url(redis_url).flushdb()
        drain_registrations()  # what earlier runs left in the shared queue is not this stack's
        yield start_portal(
            sup,
            tmp,
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "STOMP_BROKERS": f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}",
                "STOMP_LOGIN": "portal",
                "STOMP_PASSCODE": "portal-secret",
                **(env or {}),
            },
            users,
        )
