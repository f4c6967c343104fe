"""The whole pipe, end to end, on real parts.

API or CLI -> Django -> Celery worker -> STOMP broker(s) -> simulated node daemons -> replies
stored in the database and streamed over an authenticated WebSocket. Runs twice: on the embedded
profile (coilmq, SQLite, Celery filesystem queue, STOMP channel layer) and on the production
parts (ActiveMQ NOC broker bridged to two datacenter brokers, PostgreSQL, Redis).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.portal import BASE_DIR, PortalStack
from harness.replies import expected_by_fact, replies_from_messages
from harness.services import free_port
from harness.stacks import (
    ENROLMENT_TOKEN,
    activemq_fleet,
    activemq_portal,
    embedded_stack,
    portal_public_key,
    require_production_services,
)
from portal.core import stack
from portal.core.supervisor import Supervisor
from portal.jobs.options import ExecutionOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NODE_COUNT = 40
# The pipe is checked as admin (every node, unscoped); the demo's noc is scoped (see below).
PIPE_USER = "admin"
REDIS_TEST_URL = "redis://127.0.0.1:6379/7"


def _embedded(tmp: Path) -> Iterator[PortalStack]:
    yield from embedded_stack(tmp, NODE_COUNT, users=(PIPE_USER,))


def _activemq(tmp: Path) -> Iterator[PortalStack]:
    require_production_services()
    with (
        Supervisor(tmp / "logs") as sup,
        activemq_portal(sup, tmp, REDIS_TEST_URL, users=(PIPE_USER,)) as portal,
    ):
        activemq_fleet(
            sup,
            NODE_COUNT,
            seed=7,
            trusted_key=portal_public_key(tmp),
            enrolment_token=ENROLMENT_TOKEN,
            sub_collectives=True,
        )
        portal.wait_for_inventory(NODE_COUNT)
        yield portal


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("embedded"),
        pytest.param(
            "activemq", marks=[pytest.mark.activemq, pytest.mark.postgres, pytest.mark.redis]
        ),
    ],
)
def portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalStack]:
    tmp = tmp_path_factory.mktemp(request.param)
    start = _embedded if request.param == "embedded" else _activemq
    yield from start(tmp)


@pytest.fixture(scope="module")
def inventory(portal: PortalStack) -> dict[str, dict[str, object]]:
    """Every node's facts, from an `rpcutil inventory` job run through the whole pipe."""
    portal.login(PIPE_USER)
    # Broadcast discovery waits its timeout first, so the WebSocket below is connected before
    # any reply: replies must then reach it as live frames, not only in the snapshot.
    response = portal.api(
        "POST",
        "/api/jobs/",
        json={"agent": "rpcutil", "action": "inventory", "options": {"discovery": "broadcast"}},
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    messages = portal.watch_job(job_id)
    portal.inventory_messages = messages  # type: ignore[attr-defined]
    portal.inventory_job = job_id  # type: ignore[attr-defined]
    return {
        reply["identity"]: reply["data"]["facts"] for _, reply in replies_from_messages(messages)
    }


def test_every_node_reply_reaches_database_and_websocket(
    portal: PortalStack, inventory: dict
) -> None:
    job_id = portal.inventory_job  # type: ignore[attr-defined]
    messages = portal.inventory_messages  # type: ignore[attr-defined]
    final = messages[-1]["job"]
    assert final["status"] == "completed"
    assert final["counts"] == {
        "expected": NODE_COUNT,
        "replied": NODE_COUNT,
        "ok": NODE_COUNT,
        "failed": 0,
        "no_response": 0,
        "waiting": 0,
        "not_sent": 0,
    }
    assert final["no_response"] == []

    streamed = [reply["identity"] for _, reply in replies_from_messages(messages)]
    assert len(set(streamed)) == NODE_COUNT
    assert set(streamed) == portal.stored_replies(job_id)
    # The stream was live: replies arrived in frames after the browser connected.
    assert any(origin == "frame" for origin, _ in replies_from_messages(messages))
    assert {facts["datacenter"] for facts in inventory.values()} == {"a", "b"}

    detail = portal.api("GET", f"/api/jobs/{job_id}/").json()
    assert detail["status"] == "completed"
    assert {reply["identity"] for reply in detail["replies"]} == set(streamed)


def test_nodes_register_into_the_inventory(portal: PortalStack, inventory: dict) -> None:
    portal.wait_for_inventory(NODE_COUNT)
    stored = portal.stored_nodes()
    assert set(stored) == set(inventory)
    assert all(stored[identity] == facts for identity, facts in inventory.items())


def test_fact_filter_reaches_only_matching_nodes(portal: PortalStack, inventory: dict) -> None:
    expected = expected_by_fact(inventory, "customer", "acme")
    assert 0 < len(expected) < NODE_COUNT
    response = portal.api(
        "POST", "/api/jobs/", json={"agent": "rpcutil", "action": "ping", "filter": "customer=acme"}
    )
    assert response.status_code == 201, response.text
    messages = portal.watch_job(response.json()["id"])
    assert messages[-1]["job"]["counts"]["expected"] == len(expected)
    assert {reply["identity"] for _, reply in replies_from_messages(messages)} == expected
    assert portal.stored_replies(response.json()["id"]) == expected


def test_compound_filter_from_the_command_line(portal: PortalStack, inventory: dict) -> None:
    expected = {
        identity
        for identity, facts in inventory.items()
        if facts["datacenter"] == "a" and facts["environment"] != "prod"
    }
    output = portal.manage(
        "rpc",
        "rpcutil",
        "ping",
        "-F",
        "datacenter=a",
        "-S",
        "not environment=prod",
        "--user",
        PIPE_USER,
        "--json",
    )
    result = json.loads(output)
    assert result["discovered"] == len(expected)
    assert {reply["identity"] for reply in result["replies"]} == expected
    assert all(reply["statuscode"] == 0 for reply in result["replies"])
    assert result["no_response"] == []
    assert portal.stored_replies(result["job"]) == expected


def test_limit_and_batches_reach_the_seeded_choice(portal: PortalStack, inventory: dict) -> None:
    chosen = ExecutionOptions.parse({"limit": "5", "limit_seed": 3}).choose(sorted(inventory))
    output = portal.manage(
        "rpc", "rpcutil", "ping", "--limit", "5", "--limit-seed", "3",
        "--batch", "2", "--batch-sleep", "0.2", "--user", PIPE_USER, "--json",
    )  # fmt: skip
    result = json.loads(output)
    assert result["status"] == "completed"
    assert result["discovered"] == 5
    assert sorted(reply["identity"] for reply in result["replies"]) == chosen
    assert result["no_response"] == []


def test_broadcast_discovery_pings_the_nodes(portal: PortalStack, inventory: dict) -> None:
    expected = expected_by_fact(inventory, "customer", "initech")
    output = portal.manage(
        "rpc", "rpcutil", "ping", "-F", "customer=initech", "--dm", "broadcast",
        "--user", PIPE_USER, "--json",
    )  # fmt: skip
    result = json.loads(output)
    assert result["discovered"] == len(expected)
    assert {reply["identity"] for reply in result["replies"]} == expected


def test_inventory_discovery_targets_the_registered_nodes(
    portal: PortalStack, inventory: dict
) -> None:
    portal.wait_for_inventory(NODE_COUNT)
    expected = expected_by_fact(inventory, "customer", "globex")
    output = portal.manage(
        "rpc", "rpcutil", "ping", "-F", "customer=globex", "--dm", "inventory",
        "--user", PIPE_USER, "--json",
    )  # fmt: skip
    result = json.loads(output)
    assert result["discovered"] == len(expected)
    assert {reply["identity"] for reply in result["replies"]} == expected


@pytest.mark.parametrize("discovery", ["broadcast", "inventory"])
def test_a_sub_collective_job_reaches_only_its_datacenter(
    portal: PortalStack, inventory: dict, discovery: str
) -> None:
    """In ``dc_a`` the job's requests, discovery pings and replies travel on dc_a's topics and
    queues: every node of datacenter a answers and no node of b (on ActiveMQ, b's broker never
    carries them: tests/integration/test_subcollective.py)."""
    portal.wait_for_inventory(NODE_COUNT)
    datacenter_a = expected_by_fact(inventory, "datacenter", "a")
    assert 0 < len(datacenter_a) < NODE_COUNT
    output = portal.manage(
        "rpc", "rpcutil", "ping", "-T", "dc_a", "--dm", discovery, "--user", PIPE_USER, "--json",
    )  # fmt: skip
    result = json.loads(output)
    assert result["status"] == "completed"
    assert result["discovered"] == len(datacenter_a)
    assert {reply["identity"] for reply in result["replies"]} == datacenter_a
    assert portal.stored_replies(result["job"]) == datacenter_a
    assert portal.query("SELECT collective FROM jobs_job WHERE id = %s", result["job"]) == [
        ("dc_a",)
    ]


def test_the_demo_noc_reaches_only_its_scope_and_may_not_stop_services(
    portal: PortalStack, inventory: dict
) -> None:
    """The demo's noc may ping only customer=acme: the scope narrows the real targets, and the
    nodes' replies come from acme nodes only; an action outside its grant is refused."""
    portal.wait_for_inventory(NODE_COUNT)
    acme = expected_by_fact(inventory, "customer", "acme")
    assert acme and len(acme) < NODE_COUNT
    result = json.loads(portal.manage("rpc", "rpcutil", "ping", "--user", "noc", "--json"))
    assert result["status"] == "completed"
    assert {reply["identity"] for reply in result["replies"]} == acme
    refused = subprocess.run(
        [sys.executable, "manage.py", "rpc", "service", "stop", "service=nginx", "--user", "noc"],
        cwd=BASE_DIR, env={**os.environ, **portal.env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "none of your roles may run service stop" in refused.stderr


def test_unreachable_broker_fails_the_job_with_a_reason(portal: PortalStack) -> None:
    closed = free_port()
    result = subprocess.run(
        [sys.executable, "manage.py", "rpc", "rpcutil", "ping", "--user", PIPE_USER, "--json"],
        cwd=BASE_DIR,
        env={
            **os.environ,
            **portal.env,
            "STOMP_BROKERS": f"127.0.0.1:{closed}",
            "SWITCHBOARD_CONNECT_TIMEOUT": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "message broker unavailable" in result.stderr
    assert f"127.0.0.1:{closed}" in result.stderr
    assert json.loads(result.stdout)["status"] == "failed"


@pytest.mark.faults
def test_a_worker_killed_mid_job_leaves_it_interrupted_with_its_replies(
    portal: PortalStack, inventory: dict
) -> None:
    # Batches of 10 with a long pause: the worker dies after the first batch's replies.
    payload = {
        "agent": "rpcutil",
        "action": "ping",
        "options": {"batch_size": 10, "batch_sleep": 60},
    }
    # Every node fresh in the inventory first: the job targets the fresh ones, and the counts
    # below are about all NODE_COUNT (a node late to re-register would be left out, not sent).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        plan = portal.api("GET", "/api/jobs/plan/", params={"agent_action": "rpcutil.ping"})
        if plan.json()["count"] == NODE_COUNT:
            break
        time.sleep(0.5)
    assert plan.json()["count"] == NODE_COUNT, f"fresh in the inventory: {plan.json()}"
    job_id = portal.api("POST", "/api/jobs/", json=payload).json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if portal.api("GET", f"/api/jobs/{job_id}/").json()["counts"]["replied"] == 10:
            break
        time.sleep(0.2)
    portal.supervisor.kill("worker")
    stack.start_worker(portal.supervisor, env=portal.env)  # its start-up sweep finds the job

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = portal.api("GET", f"/api/jobs/{job_id}/").json()
        if job["finished"]:
            break
        time.sleep(0.2)
    assert job["status"] == "interrupted"
    assert "process ended" in job["error"]
    assert job["counts"]["replied"] == 10
    assert len(job["replies"]) == 10
    # The first batch was sent and answered; the others never went: not sent, not silent.
    assert job["no_response"] == []
    assert len(job["not_sent"]) == NODE_COUNT - 10 == job["counts"]["not_sent"]
    assert portal.stored_replies(job_id) == {reply["identity"] for reply in job["replies"]}


def _wait_until_sent(portal: PortalStack, job_id: int, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = portal.api("GET", f"/api/jobs/{job_id}/").json()
        if job["counts"]["waiting"] == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} was not sent to {count} nodes in time: {job}")


def _sleep_everywhere(portal: PortalStack, seconds: float) -> int:
    """A job of one batch whose replies all come ``seconds`` after it is sent."""
    return portal.submit({"agent": "echo", "action": "sleep", "inputs": {"seconds": seconds}})


def _taken_over(portal: PortalStack, job_id: int) -> dict:
    stack.start_worker(portal.supervisor, env=portal.env)  # its start-up sweep finds the job
    job = portal.finished(job_id, timeout=60)
    assert job["status"] == "interrupted", job
    assert "process ended" in job["error"] and "took the job over" in job["error"], job["error"]
    return job


@pytest.mark.faults
def test_a_worker_killed_before_the_replies_came_loses_none_of_them(
    portal: PortalStack, inventory: dict
) -> None:
    """The replies reach the dead runner's queue after it died: the worker that takes the job
    over reads them from there and stores every one, on both profiles."""
    job_id = _sleep_everywhere(portal, 3)
    _wait_until_sent(portal, job_id, NODE_COUNT)
    portal.supervisor.kill("worker")
    job = _taken_over(portal, job_id)
    assert job["counts"]["replied"] == NODE_COUNT == job["counts"]["ok"]
    assert job["no_response"] == [] and job["not_sent"] == []
    assert f"stored {NODE_COUNT} more replies" in job["error"]
    assert len(portal.stored_replies(job_id)) == NODE_COUNT


@pytest.mark.faults
def test_replies_a_frozen_worker_received_but_never_stored_are_not_lost(
    portal: PortalStack, inventory: dict, request: pytest.FixtureRequest
) -> None:
    """The worker is stopped (SIGSTOP) while the replies arrive, so the broker hands them to a
    process that never stores them, then killed. ActiveMQ keeps a reply until the portal
    acknowledges it after storing, so the worker taking over gets every one again. The
    embedded broker forgets a reply once handed out (it cannot acknowledge in bulk): there the
    replies the frozen worker held are lost, and counted as no response, never as answered."""
    job_id = _sleep_everywhere(portal, 1)
    _wait_until_sent(portal, job_id, NODE_COUNT)
    (worker,) = [child for child in portal.supervisor.children if child.name == "worker"]
    os.killpg(worker.process.pid, signal.SIGSTOP)
    time.sleep(4)  # every node has answered; its reply went to the frozen worker's socket
    portal.supervisor.kill("worker")
    job = _taken_over(portal, job_id)
    stored = portal.stored_replies(job_id)
    assert job["counts"]["replied"] == len(stored)
    assert len(stored) + len(job["no_response"]) == NODE_COUNT
    assert set(job["no_response"]).isdisjoint(stored)
    if "activemq" in request.node.callspec.id:
        assert len(stored) == NODE_COUNT, job["error"]
