"""A running portal as its users reach it (HTTP, WebSocket), and its database read directly.

``PortalStack`` talks to the system only as its users do and reads the stack's own database
to check what was stored; ``harness.stacks`` starts the processes behind it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from websockets.sync.client import connect as ws_connect

from portal.core.supervisor import Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent
# The password of every account a stack seeds (the demo accounts: admin, manager, noc).
PASSWORD = "integration-test-pw"  # noqa: S105 - throwaway stacks only


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
