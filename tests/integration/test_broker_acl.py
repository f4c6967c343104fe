"""The ActiveMQ network's rights, seen from a client: only the portal may send requests, and
wrong portal credentials reach the operator as a clear reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import stomp

from agents.protocol import broadcast_topic, connect, registration_queue
from harness.activemq import DC_A, NOC
from harness.services import port_open, require_service

pytestmark = [pytest.mark.activemq, pytest.mark.integration, pytest.mark.timeout(120)]

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def network() -> None:
    require_service(
        "The ActiveMQ network",
        port_open(*NOC) and port_open(*DC_A),
        "start it with `scripts/brokers up`",
    )


class Errors(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.seen = threading.Event()

    def on_error(self, frame: Any) -> None:
        self.messages.append(frame.headers.get("message", "") + " " + (frame.body or ""))
        self.seen.set()


@pytest.mark.parametrize("broker", [NOC, DC_A], ids=["noc", "dc_a"])
def test_a_client_with_the_node_credentials_cannot_publish_a_request(broker) -> None:
    errors = Errors()
    connection = connect([broker], "node", "node-secret", timeout=10, listeners={"e": errors})
    try:
        connection.send(
            destination=broadcast_topic("mcollective", "rpcutil"),
            body="{}",
            headers={"receipt": "request-1"},
        )
        assert errors.seen.wait(10), "the broker accepted a request from a node's login"
    finally:
        if connection.is_connected():
            connection.disconnect()
    assert any("not authorized to write" in message.lower() for message in errors.messages), (
        errors.messages
    )


@pytest.mark.parametrize("broker", [NOC, DC_A], ids=["noc", "dc_a"])
def test_a_client_with_the_node_credentials_cannot_read_the_registration_queue(broker) -> None:
    # Only the portal reads registrations: a node reading them would take them from it.
    errors = Errors()
    connection = connect([broker], "node", "node-secret", timeout=10, listeners={"e": errors})
    try:
        connection.subscribe(
            registration_queue("mcollective"), id="steal", ack="auto", headers={"receipt": "s-1"}
        )
        assert errors.seen.wait(10), "the broker let a node's login read the registration queue"
    finally:
        if connection.is_connected():
            connection.disconnect()
    assert any("not authorized to read" in message.lower() for message in errors.messages), (
        errors.messages
    )


def test_wrong_portal_credentials_fail_the_job_with_the_reason(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "REDIS_URL": "",
        "STOMP_BROKERS": f"{NOC[0]}:{NOC[1]}",
        "STOMP_LOGIN": "portal",
        "STOMP_PASSCODE": "not-the-password",
        "SWITCHBOARD_CONNECT_TIMEOUT": "3",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True,
            text=True, timeout=90,
        )  # fmt: skip

    assert manage("migrate", "-v0").returncode == 0
    assert manage("seed_demo").returncode == 0
    # One node in the inventory: a job that reaches no node is refused before any broker.
    node = (
        "from django.utils import timezone; from portal.inventory.models import Node; "
        "now = timezone.now(); Node.objects.create(identity='web1.example', facts={}, "
        "first_seen=now, last_seen=now, registered_at=now)"
    )
    assert manage("shell", "-c", node).returncode == 0
    result = manage("rpc", "rpcutil", "ping", "--user", "admin", "--json")
    assert result.returncode == 1
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    assert "User name [portal] or password is invalid" in job["error"]
