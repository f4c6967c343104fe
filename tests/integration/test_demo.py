"""The README's first command, end to end: ``manage.py demo`` (what ``make demo`` runs).

It must bring the embedded profile up on 127.0.0.1 with nothing outside (SQLite, the embedded
STOMP broker, simulated nodes), print the URL and the demo logins, serve jobs (here the demo
``noc`` in the ``dc_a`` sub-collective, held to its customer=acme scope), and stop every process
it started on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.portal import BASE_DIR, PASSWORD, PortalStack
from harness.replies import replies_from_messages
from harness.services import free_port, port_open

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODES = 12
BANNER = re.compile(r"Switchboard is up: (http://127\.0\.0\.1:\d+/)")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], PortalStack, list[str]]]:
    port, stomp_port = free_port(), free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "SWITCHBOARD_VAR_DIR": str(tmp_path),
        "SWITCHBOARD_DEMO_PASSWORD": PASSWORD,
        # Its own embedded broker on a free port, whatever this machine runs on 61613.
        "STOMP_BROKERS": f"127.0.0.1:{stomp_port}",
        "SWITCHBOARD_EMBEDDED_BROKER": "1",
        "REDIS_URL": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the default DB
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--nodes", str(NODES)],
        cwd=BASE_DIR,
        env={**inherited, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if BANNER.search(line):
                break
        else:
            pytest.fail("the demo exited before it was up:\n" + "".join(output))
        # The rest of the banner (the logins) follows at once.
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        url = BANNER.search("".join(output)).group(1).rstrip("/")  # type: ignore[union-attr]
        # No supervisor of ours: the demo runs its own; PortalStack only speaks HTTP here.
        # The database the demo made by default, for the test's own reads and commands.
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'switchboard.sqlite3'}"
        portal = PortalStack(url, env, tmp_path, supervisor=None)  # type: ignore[arg-type]
        yield process, portal, output
    finally:
        if process.poll() is None:
            # Ctrl-C first: the demo's children run in their own sessions and outlive a kill.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def test_the_demo_comes_up_serves_a_job_and_stops_cleanly(demo) -> None:
    process, portal, output = demo
    banner = "".join(output)
    for login in ("admin", "manager", "noc"):
        assert re.search(rf"^\s+{login}\s+{re.escape(PASSWORD)}\s", banner, re.M), banner

    # The inventory fills as the nodes register (the jobs discover from it).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(portal.stored_nodes()) < NODES:
        time.sleep(0.5)
    inventory = portal.stored_nodes()
    assert len(inventory) == NODES
    expected = {
        identity
        for identity, facts in inventory.items()
        if facts["datacenter"] == "a" and facts["customer"] == "acme"
    }
    assert expected, "the seeded fleet has acme nodes in datacenter a"

    portal.login("noc")
    portal.token = portal.manage("issue_token", "noc").strip()
    response = portal.api(
        "POST",
        "/api/jobs/",
        json={"agent": "rpcutil", "action": "ping", "options": {"collective": "dc_a"}},
    )
    assert response.status_code == 201, response.text
    messages = portal.watch_job(response.json()["id"])
    final = messages[-1]["job"]
    assert final["status"] == "completed"
    assert {reply["identity"] for _, reply in replies_from_messages(messages)} == expected

    # Ctrl-C: every process it started stops, and it says so.
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped; no process left behind." in rest
    assert not port_open("127.0.0.1", int(portal.base_url.rsplit(":", 1)[1]))
    stomp_port = int(portal.env["STOMP_BROKERS"].rsplit(":", 1)[1])
    assert not port_open("127.0.0.1", stomp_port), "the embedded broker still listens"
