"""The isolation the design promises, on real network namespaces.

A NOC namespace holds the NOC broker and the portal side (Celery worker, registration
consumer, ASGI server); each datacenter has a broker namespace bridged to the NOC and a
nodes namespace behind it (tests/integration/netns.py draws the map). Nodes have no route to
the NOC and the portal none to any node, yet a job reaches every node of both datacenters and
every reply is stored.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.simulator import fleet_identities
from harness.portal import PASSWORD, PortalStack
from harness.services import require_service
from harness.stacks import ENROLMENT_TOKEN, portal_public_key
from portal.core import stack
from portal.core.supervisor import Supervisor
from tests.integration import netns

pytestmark = [pytest.mark.integration, pytest.mark.netns, pytest.mark.timeout(900)]

NODES_PER_SITE = 3
ASGI_PORT = 8000  # in the NOC namespace: no clash with anything on the host
USER = "admin"


def require_lab() -> None:
    require_service("root", os.geteuid() == 0, "network namespaces need root (sudo)")
    require_service("iproute2", shutil.which("ip") is not None, "apt-get install -y iproute2")
    require_service(
        "ActiveMQ",
        netns.AMQ_JAR.exists() and shutil.which("java") is not None,
        f"{netns.AMQ_JAR} and java missing: run scripts/ci-services as root",
    )
    require_service(
        "network namespaces",
        netns.namespaces_work(),
        "`ip netns add` failed: run where root may create namespaces (CAP_SYS_ADMIN)",
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[netns.Lab]:
    """The run's namespaces and veths, built after clearing a crashed run's; always removed."""
    require_lab()
    netns.remove_leftovers()
    lab = netns.Lab(os.getpid())
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()


@dataclass
class System:
    lab: netns.Lab
    portal: PortalStack
    supervisors: dict[str, Supervisor]  # namespace -> what runs in it
    identities: dict[str, set[str]]  # datacenter -> the identities of its nodes


@pytest.fixture(scope="module")
def system(lab: netns.Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Brokers, portal side and nodes, each in its namespace; every process stopped on exit."""
    tmp = tmp_path_factory.mktemp("netns")
    root = netns.render_brokers(tmp / "activemq")
    sups = {ns: Supervisor(tmp / "logs" / ns.removeprefix(lab.prefix)) for ns in lab.namespaces}
    try:
        # NOC first: the datacenter brokers' bridges find it at once.
        netns.start_broker(sups[lab.noc], lab, lab.noc, root, "noc")
        for site in lab.sites:
            child = netns.start_broker(sups[site.broker_ns], lab, site.broker_ns, root, site.broker)
            # Two duplex bridges per datacenter (topics, queues), over the WAN link only.
            netns.wait_for_log_count(sups[site.broker_ns], child, netns.BRIDGE_UP, 2, 120)

        portal = start_portal_side(lab, sups[lab.noc], tmp)
        for site in lab.sites:
            stack.start_simulator(
                sups[site.nodes_ns], {site.name: site.stomp}, NODES_PER_SITE, seed=7,
                login="node", passcode="node-secret", trusted_key=portal_public_key(tmp),
                enrolment_token=ENROLMENT_TOKEN,
                wrap=lab.wrap(site.nodes_ns),
            )  # fmt: skip
        identities = {
            site.name: fleet_identities(NODES_PER_SITE, [site.name], "node") for site in lab.sites
        }
        yield System(lab, portal, sups, identities)
    finally:
        for sup in reversed(sups.values()):  # the datacenters' nodes and brokers, the NOC last
            sup.stop()


def start_portal_side(
    lab: netns.Lab, sup: Supervisor, tmp: Path, overrides: dict[str, str] | None = None
) -> PortalStack:
    """Migrate and seed the SQLite database, then start the worker, the registration consumer
    and the ASGI server in the NOC namespace, talking to the NOC broker only (``overrides``:
    settings changed, e.g. the NOC's TLS port and the portal's certificate)."""
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "SWITCHBOARD_VAR_DIR": str(tmp),
        "DATABASE_URL": f"sqlite:///{tmp / 'switchboard.sqlite3'}",
        "REDIS_URL": "",  # Celery's filesystem queue; the channel layer over the NOC broker
        "STOMP_BROKERS": f"{netns.NOC_ADDRESS}:{netns.STOMP_PORTS['noc']}",
        "STOMP_LOGIN": "portal",
        "STOMP_PASSCODE": "portal-secret",
        "SWITCHBOARD_DISCOVERY_TIMEOUT": "4",
        "ALLOWED_HOSTS": netns.NOC_ADDRESS,
        "SWITCHBOARD_DEMO_PASSWORD": PASSWORD,
        "SWITCHBOARD_AUTO_ACCEPT": "token",
        "SWITCHBOARD_ENROLMENT_TOKEN": ENROLMENT_TOKEN,
        **(overrides or {}),
    }
    portal = PortalStack(f"http://{netns.NOC_ADDRESS}:{ASGI_PORT}", env, tmp, sup)
    # Database only, no broker: run from the test's own namespace.
    portal.manage("migrate", "--noinput")
    portal.manage("seed_demo")
    portal.token = portal.manage("issue_token", USER).strip()
    wrap = lab.wrap(lab.noc)
    stack.start_worker(sup, env=env, wrap=wrap)
    stack.start_registration_consumer(sup, env=env, wrap=wrap)
    # From inside the namespace, so that start_asgi's readiness check can reach the port.
    netns.call_in(lab.noc, stack.start_asgi, sup, netns.NOC_ADDRESS, ASGI_PORT, env, wrap)
    return portal


# -- the wiring (checked with everything running) -----------------------------------------------
def assert_no_route(lab: netns.Lab, ns: str, address: str, port: int) -> None:
    route = lab.route_get(ns, address)
    assert route.returncode != 0, f"{ns} has a route to {address}: {route.stdout}"
    assert "Network is unreachable" in route.stderr, route.stderr
    error = lab.connect_error(ns, address, port)
    assert error is not None, f"{ns} connected to {address}:{port}"
    assert error.errno == errno.ENETUNREACH, f"{ns} -> {address}:{port}: {error!r}"


def test_no_namespace_forwards_and_none_has_a_default_route(system: System) -> None:
    lab = system.lab
    for ns in lab.namespaces:
        assert lab.sysctl(ns, "net.ipv4.ip_forward") == "0", ns
        assert lab.ip(ns, "route", "show", "default").stdout.strip() == "", ns


def test_every_process_runs_in_its_namespace(system: System) -> None:
    placed = {
        (ns, child.name): netns.namespace_of(child.process.pid)
        for ns, sup in system.supervisors.items()
        for child in sup.children
        if child.process is not None
    }
    assert placed == {key: key[0] for key in placed}
    # Three brokers; worker, registration consumer, ASGI server; one nodes process per site.
    assert len(placed) == 3 + 3 + 2


def test_nodes_have_no_route_to_the_noc(system: System) -> None:
    lab = system.lab
    for site in lab.sites:
        # The lab works: the nodes reach their own broker...
        error = lab.connect_error(site.nodes_ns, site.lan_broker, netns.STOMP_PORTS[site.broker])
        assert error is None, error
        # ...and nothing past it: neither the NOC's address nor its end of the WAN link.
        assert_no_route(lab, site.nodes_ns, netns.NOC_ADDRESS, netns.STOMP_PORTS["noc"])
        assert_no_route(lab, site.nodes_ns, site.wan_noc, netns.STOMP_PORTS["noc"])


def test_the_portal_has_no_route_to_any_node(system: System) -> None:
    lab = system.lab
    assert lab.connect_error(lab.noc, netns.NOC_ADDRESS, netns.STOMP_PORTS["noc"]) is None
    for site in lab.sites:
        assert_no_route(lab, lab.noc, site.lan_nodes, 22)
        assert_no_route(lab, lab.noc, site.lan_broker, netns.STOMP_PORTS[site.broker])


def test_a_node_cannot_reach_another_datacenter(system: System) -> None:
    lab = system.lab
    site_a, site_b = lab.sites
    for here, there in ((site_a, site_b), (site_b, site_a)):
        port = netns.STOMP_PORTS[there.broker]
        assert_no_route(lab, here.nodes_ns, there.lan_broker, port)
        assert_no_route(lab, here.nodes_ns, there.wan_broker, port)
        assert_no_route(lab, here.nodes_ns, there.lan_nodes, 22)


# -- the traffic ------------------------------------------------------------------------------
def test_nodes_of_both_datacenters_register(system: System) -> None:
    everyone = set().union(*system.identities.values())
    system.portal.wait_for_inventory(len(everyone), timeout=120)
    stored = system.portal.stored_nodes()
    assert set(stored) == everyone
    for datacenter, identities in system.identities.items():
        assert {stored[i]["datacenter"] for i in identities} == {datacenter}


@pytest.mark.parametrize("discovery", ["inventory", "broadcast"])
def test_a_job_to_every_node_gets_every_reply(system: System, discovery: str) -> None:
    """Submitted over the API in the NOC namespace, run by the Celery worker there; the
    request crosses both bridges and every node's reply is stored."""
    everyone = set().union(*system.identities.values())
    system.portal.wait_for_inventory(len(everyone), timeout=120)
    lab, portal = system.lab, system.portal
    response = netns.call_in(
        lab.noc, portal.api, "POST", "/api/jobs/",
        json={"agent": "rpcutil", "action": "ping", "options": {"discovery": discovery}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    job = netns.call_in(lab.noc, finished_job, portal, job_id, 120.0)
    assert job["status"] == "completed", job
    assert job["counts"] == {
        "expected": len(everyone),
        "replied": len(everyone),
        "ok": len(everyone),
        "failed": 0,
        "no_response": 0,
        "waiting": 0,
        "not_sent": 0,
    }
    assert {reply["identity"] for reply in job["replies"]} == everyone
    assert portal.stored_replies(job_id) == everyone


def finished_job(portal: PortalStack, job_id: int, timeout: float) -> dict[str, Any]:
    """The job as the API shows it once finished (polled over HTTP)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = portal.api("GET", f"/api/jobs/{job_id}/").json()
        if job["finished"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish within {timeout:.0f} s: {job}")


# -- the cleanup ------------------------------------------------------------------------------
def test_a_crashed_runs_namespaces_and_processes_are_removed() -> None:
    """Namespaces named after a test process that is gone are deleted, with what runs in them."""
    require_lab()
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a live pid
    leftover = f"{netns.PREFIX}{dead_pid}-noc"
    netns.run("ip", "netns", "add", leftover)
    sleeper = subprocess.Popen(["ip", "netns", "exec", leftover, "sleep", "600"])
    try:
        deadline = time.monotonic() + 10
        while str(sleeper.pid) not in netns.run("ip", "netns", "pids", leftover).stdout.split():
            assert time.monotonic() < deadline, "the sleeper never entered the namespace"
            time.sleep(0.1)
        assert leftover in netns.remove_leftovers()
        assert leftover not in netns.namespaces()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        if leftover in netns.namespaces():
            netns.run("ip", "netns", "del", leftover)
