"""A running Switchboard for black-box tests: real processes, real connections.

The test process talks to the system only as its users do (HTTP, WebSocket) and reads the
database directly to check what was stored. Each stack gets its own var/ directory, ports and
database, so tests never see each other's state.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from websockets.sync.client import connect as ws_connect

from agents.protocol.security import SigningKey, public_path
from portal.core import stack
from portal.core.supervisor import Supervisor
from tests.integration.wire import ACTIVEMQ_PORTS, require_network
from tests.services import port_open, require_service

BASE_DIR = Path(__file__).resolve().parents[2]
PASSWORD = "integration-test-pw"
# The stacks auto-accept nodes that prove this token (SWITCHBOARD_AUTO_ACCEPT=token), as the
# demo does; the enrolment tests start their portal without it.
ENROLMENT_TOKEN = "integration-enrolment-token"


def portal_public_key(var_dir: Path) -> Path:
    """The public half of the portal key a stack in ``var_dir`` signs with (made if missing)."""
    private = var_dir / "keys" / "portal.pem"
    SigningKey.load_or_create(private)
    return public_path(private)


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PortalStack:
    """The portal side of a running system: its ASGI server, worker and database."""

    base_url: str
    env: dict[str, str]
    var_dir: Path
    supervisor: Supervisor
    token: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def manage(self, *args: str) -> str:
        """Run a management command against this stack's database; returns its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"}
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def login(self, username: str, password: str = PASSWORD) -> None:
        """Log the session in through the real login form (CSRF included)."""
        self.session.get(self.base_url + "/login/", timeout=10)
        response = self.session.post(
            self.base_url + "/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
            },
            headers={"Referer": self.base_url + "/login/"},
            timeout=10,
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text[:500]

    def watch_job(self, job_id: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every message the job's WebSocket sends until the job is finished."""
        cookies = "; ".join(f"{k}={v}" for k, v in self.session.cookies.items())
        ws_url = self.base_url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        with ws_connect(
            ws_url, additional_headers={"Cookie": cookies}, origin=self.base_url, max_size=None
        ) as socket_:
            while time.monotonic() < deadline:
                message = json.loads(socket_.recv(timeout=max(deadline - time.monotonic(), 0.1)))
                messages.append(message)
                if message["job"]["finished"]:
                    return messages
        raise AssertionError(f"job {job_id} did not finish within {timeout} s: {messages[-1:]}")

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows from the stack's own database (``%s`` placeholders)."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            with closing(sqlite3.connect(url[len("sqlite:///") :])) as db:
                return list(db.execute(sql.replace("%s", "?"), params))
        with psycopg.connect(url) as db:
            return list(db.execute(sql, params))

    def stored_replies(self, job_id: int) -> set[str]:
        """Identities with a NodeReply row for the job, read from the database itself."""
        rows = self.query("SELECT identity FROM jobs_nodereply WHERE job_id = %s", job_id)
        return {row[0] for row in rows}

    def wait_for_inventory(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` nodes have registered (jobs discover from the inventory)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.stored_nodes()) < count:
            time.sleep(0.2)
        assert len(self.stored_nodes()) >= count, "the nodes did not all register in time"

    def submit(self, payload: dict[str, Any]) -> int:
        """POST /api/jobs/ with the stack's token; the new job's id (201 asserted)."""
        response = self.api("POST", "/api/jobs/", json=payload)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        """GET /api/jobs/<id>/: status, counts, replies, no_response."""
        response = self.api("GET", f"/api/jobs/{job_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    def finished(self, job_id: int, timeout: float = 60) -> dict[str, Any]:
        """The job once it has finished (asserted within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["finished"]:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
            time.sleep(0.3)

    def stored_nodes(self) -> dict[str, dict[str, Any]]:
        """The inventory as stored: identity -> facts."""
        rows = self.query("SELECT identity, facts FROM inventory_node")
        return {
            identity: facts if isinstance(facts, dict) else json.loads(facts)
            for identity, facts in rows
        }


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


def embedded_stack(
    tmp: Path, nodes: int, users: tuple[str, ...] = ("noc",)
) -> Iterator[PortalStack]:
    """The embedded profile on 127.0.0.1: broker, portal (worker, registration consumer,
    daphne) and ``nodes`` simulated nodes in two datacenters; all stopped on exit."""
    with Supervisor(tmp / "logs") as sup:
        stomp_port = free_port()
        brokers = f"127.0.0.1:{stomp_port}"
        stack.start_embedded_broker(sup, "127.0.0.1", stomp_port)
        # The portal first: its registration consumer must listen when the nodes register.
        portal = start_portal(sup, tmp, {"STOMP_BROKERS": brokers, "REDIS_URL": ""}, users)
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


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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
) -> Iterator[PortalStack]:
    """The production parts: a portal on the NOC broker with a fresh PostgreSQL database and
    Redis database ``redis_url`` (flushed), yielded once started; the database is dropped after.

    The caller checks that the services run (``require_production_services``) and starts
    the nodes.
    """
    database = f"switchboard_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    redis.Redis.from_url(redis_url).flushdb()
    try:
        yield start_portal(
            sup,
            tmp,
            {
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
                "REDIS_URL": redis_url,
                "STOMP_BROKERS": f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}",
                "STOMP_LOGIN": "portal",
                "STOMP_PASSCODE": "portal-secret",
                **(env or {}),
            },
            users,
        )
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def reply_identities(job: dict[str, Any]) -> set[str]:
    """Who replied, from a job as the API returns it."""
    return {reply["identity"] for reply in job["replies"]}


@dataclass
class PrefixedFleet:
    """A running portal and the identity prefix of one test's simulated nodes: on the shared
    ActiveMQ network other tests' nodes may register into this portal's inventory too."""

    portal: PortalStack
    prefix: str

    @property
    def filter(self) -> str:
        return f"identity:/^{self.prefix}/"

    def nodes(self, datacenter: str | None = None) -> set[str]:
        """This fleet's nodes in the inventory: of one datacenter (fact), or all."""
        return {
            identity
            for identity, facts in self.portal.stored_nodes().items()
            if identity.startswith(self.prefix) and datacenter in (None, facts.get("datacenter"))
        }


def expected_by_fact(inventory: dict[str, dict[str, Any]], fact: str, value: str) -> set[str]:
    """The identities whose inventory facts have ``fact == value``."""
    return {identity for identity, facts in inventory.items() if str(facts.get(fact)) == value}


def replies_from_messages(messages: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(origin, reply) for every reply the WebSocket carried: snapshot or live frame."""
    for message in messages:
        if message["type"] == "job.snapshot":
            for reply in message["job"]["replies"]:
                yield "snapshot", reply
        else:
            for reply in message["replies"]:
                yield "frame", reply
