"""Fan-out benchmark: one request to N nodes over the ActiveMQ network, raw vs the full pipe.

    .venv/bin/python bench/fanout.py [--nodes 100,1000,5000] [--repeat 3]
                                     [--discovery 2.0,0.5] [--profile-at 1000]

For each N it starts N simulated nodes (one subprocess, ``python -m agents.simulator``, split
between dc_a and dc_b, trusting only this run's portal key) and measures:

raw   a bare stomp.py client at the NOC broker publishes one sealed ``rpcutil ping`` to
      /topic/mcollective.rpcutil.agent with a reply-to queue; time from publish to the last
      of the N replies.
full  a running portal (PostgreSQL throwaway database, Redis, a Celery worker, the
      registration consumer, daphne; started by tests.integration.harness.start_portal):
      POST /api/jobs/ (token auth) for rpcutil ping, then a logged-in WebSocket client on
      /ws/jobs/<id>/; time from the POST until the N-th distinct reply identity has reached
      the WebSocket (job.snapshot + job.frame messages). Measured once per discovery timeout
      in --discovery (the worker is restarted with SWITCHBOARD_DISCOVERY_TIMEOUT set).

Every request carries the filter ``identity:/^<prefix>/`` so that only this run's nodes
answer even if other clients share the brokers (each node still receives and evaluates
every request). Medians over --repeat runs. The brokers are reused when their STOMP ports
already answer, otherwise started with ``scripts/brokers up`` and stopped at the end.

--profile-at N: after the measurements at N, run one more full-pipe job at N with
``py-spy record`` attached to the worker, daphne, the simulator and the registration
consumer (``pip install py-spy``); collapsed stacks go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import psycopg  # noqa: E402
import redis  # noqa: E402
import stomp  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from agents.filters import Filter  # noqa: E402
from agents.protocol import Request, broadcast_topic, connect, reply_queue, request_headers  # noqa: E402
from agents.protocol.security import SigningKey, open_reply, seal_request  # noqa: E402
from portal.core import stack  # noqa: E402
from portal.core.supervisor import Supervisor  # noqa: E402
from tests.integration.harness import PortalStack, portal_public_key, start_portal  # noqa: E402

HOST = "127.0.0.1"
BROKERS = {"noc": 62613, "dc_a": 62623, "dc_b": 62633}
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Not db 7: the integration tests of other checkouts flush that one.
REDIS_URL = "redis://127.0.0.1:6379/13"
RESULTS = BASE_DIR / "bench" / "results"


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def port_open(port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# --------------------------------------------------------------------------- processes
def stop_child(sup: Supervisor, name: str) -> None:
    """Stop one supervised child (its whole process group) and forget it."""
    for child in list(sup.children):
        if child.name != name or child.process is None:
            continue
        with suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
        try:
            child.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        sup.children.remove(child)


def child_pid(sup: Supervisor, name: str) -> int:
    return next(c.process.pid for c in sup.children if c.name == name and c.process)


def start_nodes(sup: Supervisor, count: int, prefix: str, trusted_key: Path) -> None:
    argv = [
        sys.executable, "-m", "agents.simulator", "--count", str(count), "--seed", "7",
        "--dc", f"a={HOST}:{BROKERS['dc_a']}", "--dc", f"b={HOST}:{BROKERS['dc_b']}",
        "--login", "node", "--passcode", "node-secret",
        "--trusted-key", str(trusted_key), "--identity-prefix", prefix,
    ]  # fmt: skip
    child = sup.start("nodes", argv)
    sup.wait_for_log(child, "nodes connected", timeout=max(120, count * 0.2))


def wait_registered(portal: PortalStack, prefix: str, count: int, timeout: float) -> float:
    """Wait until the inventory holds all ``count`` nodes with their keys; returns seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        (n,) = portal.query(
            "SELECT count(*) FROM inventory_node WHERE identity LIKE %s AND public_key <> ''",
            prefix + "%",
        )[0]
        if n >= count:
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"only {n} of {count} nodes registered within {timeout:.0f} s")


# --------------------------------------------------------------------------- raw
class _Replies(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[float, Any]] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.inbox.put((time.monotonic(), frame.body))


def measure_raw(key: SigningKey, prefix: str, count: int, timeout: float = 30.0) -> dict:
    """Publish one sealed rpcutil ping at the NOC; time to the last of ``count`` replies."""
    listener = _Replies()
    client_id = f"bench_{uuid.uuid4().hex[:12]}"
    reply_to = reply_queue("mcollective", client_id)
    conn = connect(f"{HOST}:{BROKERS['noc']}", "portal", "portal-secret")
    try:
        conn.set_listener("replies", listener)
        conn.subscribe(destination=reply_to, id="replies", ack="auto")
        time.sleep(0.3)  # let the subscription reach the broker (as the gateway's does)
        request = Request.new(
            collective="mcollective", agent="rpcutil", action="ping", callerid="user=bench",
            filter=Filter.parse(f"identity:/^{prefix}/"), ttl=60, roles=["operator"],
        )  # fmt: skip
        body = seal_request(request, key)
        t0 = time.monotonic()
        conn.send(
            destination=broadcast_topic("mcollective", "rpcutil"),
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
    }


# --------------------------------------------------------------------------- full pipe
def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def measure_full(
    portal: PortalStack, prefix: str, count: int, timeout: float = 45.0, inventory: bool = False
) -> dict:
    """POST a ping job, watch its WebSocket; time to the count-th distinct reply identity.

    ``inventory``: discover from the registration inventory instead of a broadcast ping.
    """
    cookies = "; ".join(f"{k}={v}" for k, v in portal.session.cookies.items())
    wall0 = time.time()
    t0 = time.monotonic()
    response = portal.api(
        "POST",
        "/api/jobs/",
        json={
            "agent": "rpcutil",
            "action": "ping",
            "filter": f"identity:/^{prefix}/",
            "options": {"discovery": "inventory"} if inventory else {},
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
    with ws_connect(ws_url, additional_headers={"Cookie": cookies}, origin=portal.base_url) as ws:
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


def restart_worker(sup: Supervisor, portal: PortalStack, discovery: float) -> None:
    stop_child(sup, "worker")
    env = {**portal.env, "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discovery)}
    stack.start_worker(sup, env=env)


def py_spy(pid: int, out: Path, duration: int) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
         "--duration", str(duration), "--rate", "200", "--threads", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def profile_full(sup: Supervisor, portal: PortalStack, prefix: str, count: int, tag: str) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    spies = []
    for name in ("worker", "asgi", "nodes", "registrations"):
        # Celery's thread pool runs in the main process: its pid is the child's own.
        spies.append(py_spy(child_pid(sup, name), RESULTS / f"pyspy-{tag}-{name}.txt", 12))
    time.sleep(1.5)  # py-spy attaches
    result = measure_full(portal, prefix, count)
    for spy in spies:
        try:
            spy.wait(timeout=90)
        except subprocess.TimeoutExpired:  # py-spy on thousands of threads can lag behind
            spy.kill()
            spy.wait()
    return result


# --------------------------------------------------------------------------- main
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--discovery",
        default="0,2.0",
        help="broadcast discovery timeouts to measure; 0 means inventory discovery",
    )
    parser.add_argument("--profile-at", type=int, default=0, help="py-spy one full run at N")
    parser.add_argument("--json", default=str(RESULTS / "fanout.json"))
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    discoveries = [float(d) for d in args.discovery.split(",") if d.strip()]

    started_brokers = False
    if all(port_open(p) for p in BROKERS.values()):
        log("brokers already answer on 62613/62623/62633: reusing them")
    else:
        log("starting the broker network: scripts/brokers up")
        subprocess.run([str(BASE_DIR / "scripts" / "brokers"), "up"], check=True, cwd=BASE_DIR)
        started_brokers = True

    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    database = f"switchboard_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    results: dict[int, dict[str, Any]] = {}
    try:
        with Supervisor(tmp / "logs") as sup:
            env = {
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
                "REDIS_URL": REDIS_URL,
                "STOMP_BROKERS": f"{HOST}:{BROKERS['noc']}",
                "STOMP_LOGIN": "portal",
                "STOMP_PASSCODE": "portal-secret",
                "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discoveries[0]),
            }
            log(f"starting the portal (database {database}, logs in {tmp / 'logs'})")
            portal = start_portal(sup, tmp, env)
            portal.login("noc")
            pub = portal_public_key(tmp)
            key = SigningKey.load(tmp / "keys" / "portal.pem")
            current_discovery = discoveries[0]
            for count in sizes:
                prefix = f"b{count}x{uuid.uuid4().hex[:4]}"
                t = time.monotonic()
                start_nodes(sup, count, prefix, pub)
                log(f"N={count}: nodes connected in {time.monotonic() - t:.1f} s")
                reg = wait_registered(portal, prefix, count, timeout=max(60, count * 0.05))
                log(f"N={count}: all registered {reg:.1f} s later")
                res: dict[str, Any] = {"raw": [], "full": {d: [] for d in discoveries}}
                # Warm-up (JIT, broker consumers, caches); a fleet that just connected may need
                # a few seconds before the bridges carry its subscriptions.
                for attempt in range(5):
                    try:
                        measure_raw(key, prefix, count)
                        break
                    except RuntimeError as exc:
                        log(f"N={count} warm-up #{attempt + 1}: {exc}; waiting")
                        time.sleep(5)
                for i in range(args.repeat):
                    r = measure_raw(key, prefix, count)
                    log(f"N={count} raw #{i + 1}: {r['ms']:.0f} ms ({r['replies']} replies)")
                    res["raw"].append(r)
                # Alternate the order of discovery settings per N to save a worker restart.
                order = discoveries if current_discovery == discoveries[0] else discoveries[::-1]
                for discovery in order:
                    # 0 stands for inventory discovery: no broadcast, so no timeout to set.
                    if discovery and discovery != current_discovery:
                        restart_worker(sup, portal, discovery)
                        current_discovery = discovery
                    for i in range(args.repeat):
                        r = measure_full(portal, prefix, count, inventory=discovery == 0)
                        log(
                            f"N={count} full (discovery {discovery:g} s) #{i + 1}: "
                            f"{r['ms']:.0f} ms, {r['replies']} replies, counts {r['counts']}, "
                            f"queue {r.get('queue_ms', 0):.0f} discovery "
                            f"{r.get('discovery_ms', 0):.0f} collect {r.get('collect_ms', 0):.0f} "
                            f"ws lag {r.get('ws_lag_ms', 0):.0f} ms"
                        )
                        res["full"][discovery].append(r)
                if args.profile_at == count:
                    if current_discovery != discoveries[0]:
                        restart_worker(sup, portal, discoveries[0])
                        current_discovery = discoveries[0]
                    r = profile_full(sup, portal, prefix, count, f"{count}-d{current_discovery:g}")
                    log(f"N={count} profiled run: {r}")
                    res["profiled"] = r
                results[count] = res
                stop_child(sup, "nodes")
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(tmp, ignore_errors=True)
        if started_brokers:
            subprocess.run([str(BASE_DIR / "scripts" / "brokers"), "down"], check=False)

    report(results, discoveries, args.json)
    return 0


def report(results: dict[int, dict[str, Any]], discoveries: list[float], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        json.dumps({str(k): v for k, v in results.items()}, indent=1, default=str)
    )
    default = discoveries[0]
    header = f"{'N':>6} {'raw ms':>8}"
    for d in discoveries:
        header += f" {f'full@{d:g}s':>11} {'-discov.':>9} {'ratio':>6}"
    header += f" {'pipe/raw':>9} {'replies':>9}"
    print(header)
    last_ratio = None
    for count, res in results.items():
        raw = median([r["ms"] for r in res["raw"]])
        line = f"{count:>6} {raw:>8.0f}"
        pipe_only = []
        replies = []
        for d in discoveries:
            runs = res["full"][d]
            full = median([r["ms"] for r in runs])
            minus = median([r["ms"] - r.get("discovery_ms", 0) for r in runs])
            pipe_only.append(minus)
            replies.append(min(r["replies"] for r in runs) if runs else 0)
            ratio = full / raw
            if d == default and count == max(results):
                last_ratio = ratio
            line += f" {full:>11.0f} {minus:>9.0f} {ratio:>6.2f}"
        line += f" {median(pipe_only) / raw:>9.2f} {'/'.join(map(str, replies)):>9}"
        print(line)
    print(
        "(full = POST to last reply on the WebSocket; -discov. = full minus the worker's discovery "
        "phase; ratio = full/raw; pipe/raw = (full - discovery)/raw; replies = fewest distinct "
        "identities on the WebSocket per setting)"
    )
    largest = max(results)
    print(f"ratio full/raw at {largest} nodes: {last_ratio:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
