"""The baseline: the same request published by a bare stomp.py client at the NOC broker, as
the portal's gateway publishes it, timed to the last of the N replies."""

from __future__ import annotations

import queue
import time
import uuid
from contextlib import suppress
from typing import Any

import stomp

from agents.filters import Filter
from agents.protocol import Request, broadcast_topic, connect, reply_queue, request_headers
from agents.protocol.security import open_reply, seal_request
from bench.fanout.common import ACTIONS, load1
from bench.fanout.stacks import BenchStack


class _Replies(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[float, Any]] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.inbox.put((time.monotonic(), frame.body))


def measure_raw(
    bench: BenchStack, prefix: str, count: int, timeout: float = 30.0, action: str = "rpcutil.ping"
) -> dict:
    """Publish one sealed request (``agent.action``) at the NOC; time to the last of ``count``
    replies."""
    agent_name, action_name = action.split(".")
    listener = _Replies()
    client_id = f"bench_{uuid.uuid4().hex[:12]}"
    reply_to = reply_queue("mcollective", client_id)
    load_before = load1()
    conn = connect(bench.noc, *bench.portal_login)
    try:
        conn.set_listener("replies", listener)
        conn.subscribe(destination=reply_to, id="replies", ack="auto")
        time.sleep(0.3)  # let the subscription reach the broker (as the gateway's does)
        request = Request.new(
            collective="mcollective", agent=agent_name, action=action_name,
            callerid="user=bench", data=ACTIONS[action],
            filter=Filter.parse(f"identity:/^{prefix}/"), ttl=60, roles=["operator"],
        )  # fmt: skip
        body = seal_request(request, bench.key)
        t0 = time.monotonic()
        conn.send(
            destination=broadcast_topic("mcollective", agent_name),
            body=body,
            headers=request_headers(reply_to, request.msgtime, request.ttl),
            content_type="application/json",
        )
        seen: set[str] = set()
        first = last = None
        deadline = t0 + timeout
        while len(seen) < count and time.monotonic() < deadline:
            try:
                when, payload = listener.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            reply = open_reply(payload)[0]
            if reply.requestid != request.requestid:
                continue
            seen.add(reply.senderid)
            first = first or when
            last = when
    finally:
        with suppress(Exception):
            conn.disconnect()
    if last is None:
        raise RuntimeError("raw: no reply at all")
    return {
        "ms": (last - t0) * 1000,
        "first_ms": (first - t0) * 1000,
        "replies": len(seen),
        "load": [load_before, load1()],
        "identities": seen,
    }
