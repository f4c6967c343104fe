"""The full pipe: a job POSTed to the portal, timed until its N-th distinct reply has reached
a logged-in WebSocket client; the worker's phases are read from the job's row."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from websockets.sync.client import connect as ws_connect

from bench.fanout.common import ACTIONS, load1
from harness.portal import PortalStack


def _ts(value: Any) -> float | None:
    """A stored datetime as a POSIX timestamp: PostgreSQL gives datetimes, SQLite gives
    Django's text (UTC, without an offset)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
    return value.timestamp()


def measure_full(
    portal: PortalStack,
    prefix: str,
    count: int,
    timeout: float = 45.0,
    inventory: bool = False,
    action: str = "rpcutil.ping",
) -> dict:
    """POST a job, watch its WebSocket; time to the count-th distinct reply identity.

    ``inventory``: discover from the registration inventory instead of a broadcast ping.
    """
    cookies = "; ".join(f"{k}={v}" for k, v in portal.session.cookies.items())
    load_before = load1()
    wall0 = time.time()
    t0 = time.monotonic()
    response = portal.api(
        "POST",
        "/api/jobs/",
        json={
            "agent": action.split(".")[0],
            "action": action.split(".")[1],
            "inputs": ACTIONS[action],
            "filter": f"identity:/^{prefix}/",
            "options": {"discovery": "inventory" if inventory else "broadcast"},
        },
    )
    t_post = time.monotonic()
    if response.status_code != 201:
        raise RuntimeError(f"POST /api/jobs/ -> {response.status_code}: {response.text[:300]}")
    job_id = response.json()["id"]
    ws_url = portal.base_url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
    seen: set[str] = set()
    t_last = t_first = None
    frames = 0
    final: dict[str, Any] = {}
    with ws_connect(
        ws_url, additional_headers={"Cookie": cookies}, origin=portal.base_url, max_size=None
    ) as ws:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            now = time.monotonic()
            if message["type"] == "job.snapshot":
                replies = message["job"].get("replies", [])
            else:
                frames += 1
                replies = message.get("replies", [])
            before = len(seen)
            seen.update(r["identity"] for r in replies)
            if len(seen) > before:
                t_first = t_first or now
                if len(seen) >= count and t_last is None:
                    t_last = now
            final = message["job"]
            if final.get("finished"):
                break
    if t_last is None:
        t_last = time.monotonic()  # did not reach every node: report the time it gave up
    row = portal.query(
        "SELECT started_at, discovered_at, first_reply_at, last_reply_at, finished_at "
        "FROM jobs_job WHERE id = %s",
        job_id,
    )[0]
    started, discovered, _first_reply, last_reply, finished = (_ts(v) for v in row)
    result = {
        "job": job_id,
        "ms": (t_last - t0) * 1000,
        "post_ms": (t_post - t0) * 1000,
        "replies": len(seen),
        "frames": frames,
        "counts": final.get("counts"),
        "status": final.get("status"),
        "load": [load_before, load1()],
        "identities": seen,
    }
    if started and discovered:
        result["queue_ms"] = (started - wall0) * 1000  # POST -> worker claimed the job
        result["discovery_ms"] = (discovered - started) * 1000
        if last_reply:
            result["collect_ms"] = (last_reply - discovered) * 1000  # publish .. last reply
            # last reply received by the worker -> last reply on the WebSocket
            result["ws_lag_ms"] = (wall0 + (t_last - t0) - last_reply) * 1000
        if finished:
            result["finish_ms"] = (finished - wall0) * 1000
    return result
