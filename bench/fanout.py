"""Fan-out benchmark: one request to N nodes over the ActiveMQ network, raw vs the full pipe.

    .venv/bin/python bench/fanout.py [--nodes 100,1000,5000] [--repeat 3]
                                     [--discovery 0,2.0] [--profile-at 5000]
                                     [--nodes-per-process 1000] [--worker-threads 16]

For each N it starts N simulated nodes split between dc_a and dc_b (``python -m
agents.simulator --processes K``: K = ceil(N / --nodes-per-process) shard processes of one
seeded fleet, identities ``<prefix><index>.<dc>.example``, trusting only this run's portal
key; each process runs its nodes' actions on one pool of --worker-threads threads) and
measures, against those same nodes:

raw   a bare stomp.py client at the NOC broker publishes one sealed ``rpcutil ping`` to
      /topic/mcollective.rpcutil.agent with a reply-to queue; time from publish to the last
      of the N replies.
full  a running portal (PostgreSQL throwaway database, Redis, a Celery worker, the
      registration consumer, daphne; started by tests.integration.harness.start_portal):
      POST /api/jobs/ (token auth, as the unscoped demo ``admin``) for rpcutil ping, then a
      logged-in WebSocket client on /ws/jobs/<id>/; time from the POST until the N-th distinct
      reply identity has reached the WebSocket (job.snapshot + job.frame messages). Measured
      once per setting in --discovery: 0 = inventory discovery, else a broadcast discovery
      with that timeout (the worker is restarted with SWITCHBOARD_DISCOVERY_TIMEOUT set).

Every reply set is checked against the fleet's identities (``same_nodes`` in the JSON): raw
and full must both be answered by exactly the N nodes started. Every request carries the
filter ``identity:/^<prefix>/`` so that only this run's nodes answer even if other clients
share the brokers (each node still receives and evaluates every request). Medians over
--repeat runs; each measurement records the 1-minute load average before and after it (the
machine may be shared). The brokers are reused when their STOMP ports already answer,
otherwise started with ``scripts/brokers up`` and stopped at the end.

Limits are checked before each N: the simulated nodes need two threads each (stomp.py's
receiver and heart-beat; three with --worker-threads 0), counted against pid_max,
threads-max and ``ulimit -u``; when per-node pools would not fit, the shared pool is used
(and recorded), and an N that does not fit at all is skipped with the reason. A size that
fails is reported as such and the others still run; the portal's logs are then kept.

--profile-at N: after the measurements at N, run one more full-pipe job at N with
``py-spy record`` attached to the worker, daphne, the registration consumer and every
simulator process; collapsed stacks go to bench/results/pyspy-<N>-*.txt and a summary of the
hottest frames to the JSON and the log.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import queue
import re
import resource
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
from agents.simulator import fleet_identities  # noqa: E402
from portal.core import stack  # noqa: E402
from portal.core.supervisor import Supervisor  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    ENROLMENT_TOKEN,
    PortalStack,
    portal_public_key,
    start_portal,
)

HOST = "127.0.0.1"
BROKERS = {"noc": 62613, "dc_a": 62623, "dc_b": 62633}
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Not db 7: the integration tests of other checkouts flush that one.
REDIS_URL = "redis://127.0.0.1:6379/13"
RESULTS = BASE_DIR / "bench" / "results"
BROKER_DIR = BASE_DIR / "var" / "activemq"
DATACENTERS = ["a", "b"]
# The demo's noc is scoped to one customer; the benchmark needs every node.
BENCH_USER = "admin"
# Threads left for the brokers (a reconnect storm took each to ~3,000), the portal and others.
THREAD_HEADROOM = 6000
SHARED_POOL_THREADS = 16
# What --action may name: the request's inputs. rpcutil ping (the DDL's 5 s timeout) is the
# default; echo echo (15 s) lets a job wait for a fleet slower than 5 s.
ACTIONS: dict[str, dict[str, Any]] = {"rpcutil.ping": {}, "echo.echo": {"message": "bench"}}


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


def start_nodes(
    sup: Supervisor, count: int, prefix: str, trusted_key: Path, processes: int, worker_threads: int
) -> None:
    stack.start_simulator(
        sup,
        {dc: f"{HOST}:{BROKERS[f'dc_{dc}']}" for dc in DATACENTERS},
        count,
        seed=7,
        login="node",
        passcode="node-secret",
        trusted_key=trusted_key,
        identity_prefix=prefix,
        processes=processes,
        worker_threads=worker_threads,
        enrolment_token=ENROLMENT_TOKEN,
    )


# --------------------------------------------------------------------------- machine
def _read_int(path: str) -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def machine_threads() -> int:
    """Threads running on the machine now (every task of every process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                total += len(os.listdir(entry / "task"))
    return total


def machine_limits() -> dict[str, Any]:
    """What bounds a simulated fleet here: cores, memory, thread and descriptor limits."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    return {
        "cpus": os.cpu_count(),
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "pid_max": _read_int("/proc/sys/kernel/pid_max"),
        "threads_max": _read_int("/proc/sys/kernel/threads-max"),
        "ulimit_u": nproc[0],
        "ulimit_n": list(nofile),
        "threads_now": machine_threads(),
        "load": os.getloadavg(),
    }


def thread_budget(count: int, processes: int, worker_threads: int) -> tuple[int, int]:
    """(threads the fleet needs, threads the machine can still give it).

    A node has stomp.py's receiver and heart-beat threads plus its action pool's thread (or
    a share of one pool per process); the threads-per-task limit is the smallest of pid_max
    (every thread takes an id), threads-max and ulimit -u (per user).
    """
    per_node = 2 if worker_threads else 3
    needed = count * per_node + processes * (worker_threads + 70)
    limits = [
        _read_int("/proc/sys/kernel/pid_max"),
        _read_int("/proc/sys/kernel/threads-max"),
    ]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if nproc != resource.RLIM_INFINITY:
        limits.append(nproc)
    available = min(x for x in limits if x > 0) - machine_threads() - THREAD_HEADROOM
    return needed, available


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                fields[key] = int(value.split()[0])
    return fields


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def old_gen_mb(pid: int) -> float | None:
    """A JVM's old-generation occupancy (jstat -gc OU), if jstat is installed."""
    jstat = shutil.which("jstat")
    if not jstat:
        return None
    out = subprocess.run([jstat, "-gc", str(pid)], capture_output=True, text=True, check=False)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) < 2 or "OU" not in lines[0].split():
        return None
    return round(float(lines[1].split()[lines[0].split().index("OU")]) / 1024, 1)


def fleet_resources(sup: Supervisor) -> dict[str, Any]:
    """Threads and memory of the simulator processes and the brokers, at this moment."""
    parent = child_pid(sup, "nodes")
    shards = _children(parent) or [parent]
    stats = [_status(pid) for pid in shards]
    result: dict[str, Any] = {
        "simulator_processes": len(shards),
        "simulator_threads": sum(s.get("Threads", 0) for s in stats),
        "simulator_rss_mb": round(sum(s.get("VmRSS", 0) for s in stats) / 1024),
        "machine_threads": machine_threads(),
    }
    for name in ("noc", "dc_a", "dc_b"):
        pid = _read_int(str(BROKER_DIR / name / "activemq.pid"))
        if pid:
            st = _status(pid)
            result[name] = {
                "threads": st.get("Threads"),
                "rss_mb": round(st.get("VmRSS", 0) / 1024),
                "old_gen_mb": old_gen_mb(pid),
                "fds": len(os.listdir(f"/proc/{pid}/fd")) if Path(f"/proc/{pid}").exists() else 0,
            }
    return result


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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _machine_busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return sum(fields[:8]) - idle - iowait


def _pids_matching(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def cpu_snapshot(sup: Supervisor, database: str) -> dict[str, dict[int, int]]:
    """CPU ticks used so far by each process of each part of the run (``machine``: all)."""
    parts: dict[str, list[int]] = {}
    for child in sup.children:
        if child.process is not None:
            parts[child.name] = [child.process.pid]
    with suppress(StopIteration):
        parts["nodes"] += _children(parts["nodes"][0])
    for name in ("noc", "dc_a", "dc_b"):
        pid = _read_int(str(BROKER_DIR / name / "activemq.pid"))
        if pid:
            parts[name] = [pid]
    # PostgreSQL backends name their database in their process title.
    parts["postgres"] = _pids_matching(f" {database} ")
    parts["bench"] = [os.getpid()]
    ticks = {name: {pid: _cpu_ticks(pid) for pid in pids} for name, pids in parts.items()}
    ticks["machine"] = {0: _machine_busy_ticks()}
    return ticks


def cpu_used(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict:
    """CPU seconds per part between two snapshots; ``others`` = the machine minus ours (other
    sessions, Redis, short-lived PostgreSQL backends)."""
    used = {
        name: round(
            sum(t - before.get(name, {}).get(pid, 0) for pid, t in pids.items()) / CLOCK_TICKS, 2
        )
        for name, pids in after.items()
    }
    ours = sum(v for k, v in used.items() if k != "machine")
    used["others"] = round(max(used["machine"] - ours, 0.0), 2)
    return used


class FleetUnstable(RuntimeError):
    """The simulated fleet stopped answering whole (lost connections): this N is not measured."""


# --------------------------------------------------------------------------- raw
class _Replies(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[float, Any]] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.inbox.put((time.monotonic(), frame.body))


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def measure_raw(
    key: SigningKey, prefix: str, count: int, timeout: float = 30.0, action: str = "rpcutil.ping"
) -> dict:
    """Publish one sealed request (``agent.action``) at the NOC; time to the last of ``count``
    replies."""
    agent_name, action_name = action.split(".")
    listener = _Replies()
    client_id = f"bench_{uuid.uuid4().hex[:12]}"
    reply_to = reply_queue("mcollective", client_id)
    load_before = load1()
    conn = connect(f"{HOST}:{BROKERS['noc']}", "portal", "portal-secret")
    try:
        conn.set_listener("replies", listener)
        conn.subscribe(destination=reply_to, id="replies", ack="auto")
        time.sleep(0.3)  # let the subscription reach the broker (as the gateway's does)
        request = Request.new(
            collective="mcollective", agent=agent_name, action=action_name,
            callerid="user=bench", data=ACTIONS[action],
            filter=Filter.parse(f"identity:/^{prefix}/"), ttl=60, roles=["operator"],
        )  # fmt: skip
        body = seal_request(request, key)
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


# --------------------------------------------------------------------------- full pipe
def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


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


def check_nodes(result: dict, fleet: set[str]) -> dict:
    """Replace the reply identities by how they compare with the fleet that was started."""
    seen = result.pop("identities")
    result["same_nodes"] = seen == fleet
    if seen != fleet:
        result["missing"] = len(fleet - seen)
        result["strangers"] = len(seen - fleet)
    return result


def restart_worker(sup: Supervisor, portal: PortalStack, discovery: float) -> None:
    stop_child(sup, "worker")
    env = {**portal.env, "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discovery)}
    stack.start_worker(sup, env=env)


# --------------------------------------------------------------------------- profile
def py_spy(pid: int, out: Path, duration: int, gil_only: bool = False) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
            "--duration", str(duration), "--rate", "50", "--nonblocking"]  # fmt: skip
    # A simulator process has ~3,000 threads, nearly all blocked in recv: sample only the one
    # holding the GIL (what the process spends its CPU on), aggregated over threads.
    argv += ["--gil"] if gil_only else ["--threads"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def summarize_profile(path: Path, top: int = 8) -> dict[str, Any]:
    """The hottest leaf frames and the share of samples under a few telling functions."""
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            stack_text, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [
                f.split(" (")[0]
                for f in stack_text.split(";")
                if not f.startswith(("thread", "process"))
            ]
            if not frames:
                continue
            total += count
            leaves[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "leaf": pct(leaves), "inclusive": pct(inclusive)}


def profile_full(
    sup: Supervisor, portal: PortalStack, prefix: str, count: int, tag: str, action: str
) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    duration = max(12, math.ceil(count / 1000) * 4)
    spies = {}
    for name in ("worker", "asgi", "nodes", "registrations"):
        # Celery's thread pool runs in the main process: its pid is the child's own. The
        # simulator's shards are alike: one of them stands for all.
        pid = child_pid(sup, name)
        if name == "nodes":
            pid = min(_children(pid) or [pid])
        out = RESULTS / f"pyspy-{tag}-{name}.txt"
        spies[name] = (out, py_spy(pid, out, duration, gil_only=name == "nodes"))
    time.sleep(2.0)  # py-spy attaches
    result = measure_full(portal, prefix, count, timeout=max(45.0, count * 0.01), action=action)
    summaries = {}
    for name, (out, spy) in spies.items():
        try:
            spy.wait(timeout=duration + 90)
        except subprocess.TimeoutExpired:  # py-spy on thousands of threads can lag behind
            spy.kill()
            spy.wait()
        summaries[name] = summarize_profile(out)
        log(f"profile {name}: {summaries[name]}")
    result["profile"] = summaries
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
        help="discovery settings to measure; 0 means inventory discovery, else a broadcast "
        "discovery timeout in seconds",
    )
    parser.add_argument("--profile-at", type=int, default=0, help="py-spy one full run at N")
    parser.add_argument(
        "--nodes-per-process", type=int, default=1000, help="simulated nodes per process"
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=SHARED_POOL_THREADS,
        help="one action pool of this size per simulator process; 0: a pool per node, as "
        "real nodes have (at 5,000 nodes on 2 cores that makes 5,000 threads runnable per "
        "broadcast, and the load climbs run after run)",
    )
    parser.add_argument(
        "--action",
        choices=sorted(ACTIONS),
        default="rpcutil.ping",
        help="the request: rpcutil.ping (DDL timeout 5 s) or echo.echo (15 s)",
    )
    parser.add_argument("--json", default=str(RESULTS / "fanout.json"))
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    discoveries = [float(d) for d in args.discovery.split(",") if d.strip()]
    limits = machine_limits()
    log(f"machine: {limits}")

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
    failed = True  # until the portal is up
    try:
        with Supervisor(tmp / "logs") as sup:
            env = {
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
                "REDIS_URL": REDIS_URL,
                "STOMP_BROKERS": f"{HOST}:{BROKERS['noc']}",
                "STOMP_LOGIN": "portal",
                "STOMP_PASSCODE": "portal-secret",
                "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discoveries[0] or 2.0),
                # As deployed: DEBUG (the development default) wraps every query in Django's
                # debug cursor and keeps it in memory for the worker's lifetime.
                "DEBUG": "false",
            }
            log(f"starting the portal (database {database}, logs in {tmp / 'logs'})")
            portal = start_portal(sup, tmp, env, users=(BENCH_USER,))
            portal.login(BENCH_USER)
            pub = portal_public_key(tmp)
            key = SigningKey.load(tmp / "keys" / "portal.pem")
            current_discovery = discoveries[0]
            failed = False
            for count in sizes:
                try:
                    res = measure_size(sup, portal, key, pub, count, args, discoveries,
                                       current_discovery, database)  # fmt: skip
                except Exception as exc:  # one size failing must not lose the others
                    log(f"N={count}: failed: {exc!r}")
                    failed = True
                    results[count] = {"error": repr(exc)}
                    continue
                current_discovery = res.pop("_discovery", current_discovery)
                results[count] = res
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_URL).flushdb()
        if failed:
            log(f"logs of the portal and the simulator kept in {tmp / 'logs'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if started_brokers:
            subprocess.run([str(BASE_DIR / "scripts" / "brokers"), "down"], check=False)

    report(results, discoveries, args.json, limits, args.action)
    return 0


def conditions(result: dict) -> str:
    """The load and CPU seconds of one measurement, for the log."""
    cpu = ", ".join(f"{k} {v:g}" for k, v in result["cpu_s"].items() if v)
    return f"load {result['load'][0]} -> {result['load'][1]}, cpu s: {cpu}"


def measure_fleet(
    sup: Supervisor,
    portal: PortalStack,
    key: SigningKey,
    count: int,
    prefix: str,
    res: dict[str, Any],
    args: argparse.Namespace,
    discoveries: list[float],
    current_discovery: float,
    database: str,
) -> float:
    """Raw and full measurements against the running fleet, into ``res``; returns the
    discovery timeout the worker now has. Raises FleetUnstable when nodes stop answering."""
    fleet = fleet_identities(count, DATACENTERS, prefix)
    reg = wait_registered(portal, prefix, count, timeout=max(60, count * 0.05))
    res["register_s"] = round(reg, 1)
    log(f"N={count}: all registered {reg:.1f} s later")
    # Warm-up (JIT, broker consumers, caches); a fleet that just connected may need
    # a few seconds before the bridges carry its subscriptions.
    raw_timeout = max(30.0, count * 0.01)
    warm: dict[str, Any] = {"replies": 0, "ms": 0.0, "load": [load1(), load1()]}
    for attempt in range(2):
        try:
            warm = measure_raw(key, prefix, count, timeout=raw_timeout, action=args.action)
        except RuntimeError as exc:
            log(f"N={count} warm-up #{attempt + 1}: {exc}; waiting")
            time.sleep(5)
            continue
        if warm["replies"] == count:
            break
        log(f"N={count} warm-up #{attempt + 1}: {warm['replies']} of {count} replies")
        time.sleep(5)
    res["resources"] = fleet_resources(sup)
    log(f"N={count}: resources {res['resources']}")
    if warm["replies"] < count:
        # Nodes that miss a broadcast have lost their connection (heart-beats starved):
        # measuring on would time a reconnect storm, not the fan-out.
        raise FleetUnstable(
            f"the fleet does not answer whole: {warm['replies']} of {count} replies to "
            f"the last warm-up ({warm['ms']:.0f} ms, load {warm['load'][1]})"
        )
    for i in range(args.repeat):
        before = cpu_snapshot(sup, database)
        r = measure_raw(key, prefix, count, timeout=raw_timeout, action=args.action)
        check_nodes(r, fleet)
        r["cpu_s"] = cpu_used(before, cpu_snapshot(sup, database))
        log(
            f"N={count} raw #{i + 1}: {r['ms']:.0f} ms ({r['replies']} replies, same nodes "
            f"{r['same_nodes']}), {conditions(r)}"
        )
        res["raw"].append(r)
        if r["replies"] < count:
            raise FleetUnstable(f"raw #{i + 1} got {r['replies']} of {count} replies")
    # Alternate the order of discovery settings per N to save a worker restart.
    order = discoveries if current_discovery == discoveries[0] else discoveries[::-1]
    for discovery in order:
        # 0 stands for inventory discovery: no broadcast, so no timeout to set.
        if discovery and discovery != current_discovery:
            restart_worker(sup, portal, discovery)
            current_discovery = discovery
        for i in range(args.repeat):
            before = cpu_snapshot(sup, database)
            r = measure_full(
                portal, prefix, count, timeout=max(45.0, count * 0.01),
                inventory=not discovery, action=args.action,
            )  # fmt: skip
            r["cpu_s"] = cpu_used(before, cpu_snapshot(sup, database))
            check_nodes(r, fleet)
            log(
                f"N={count} full (discovery {discovery:g} s) #{i + 1}: "
                f"{r['ms']:.0f} ms, {r['replies']} replies (same nodes {r['same_nodes']}), "
                f"counts {r['counts']}, queue {r.get('queue_ms', 0):.0f} discovery "
                f"{r.get('discovery_ms', 0):.0f} collect {r.get('collect_ms', 0):.0f} "
                f"ws lag {r.get('ws_lag_ms', 0):.0f} ms, {conditions(r)}"
            )
            res["full"][discovery].append(r)
    if args.profile_at == count:
        if current_discovery != discoveries[0] and discoveries[0]:
            restart_worker(sup, portal, discoveries[0])
            current_discovery = discoveries[0]
        tag = f"{count}-d{discoveries[0]:g}" + ("" if args.action == "rpcutil.ping" else "-echo")
        r = profile_full(sup, portal, prefix, count, tag, args.action)
        check_nodes(r, fleet)
        log(f"N={count} profiled run: {r['ms']:.0f} ms, {r['replies']} replies")
        res["profiled"] = r
    return current_discovery


def measure_size(
    sup: Supervisor,
    portal: PortalStack,
    key: SigningKey,
    pub: Path,
    count: int,
    args: argparse.Namespace,
    discoveries: list[float],
    current_discovery: float,
    database: str,
) -> dict[str, Any]:
    """Start ``count`` nodes, measure raw and full against them, stop them."""
    processes = max(1, math.ceil(count / args.nodes_per_process))
    worker_threads = args.worker_threads
    needed, available = thread_budget(count, processes, worker_threads)
    if needed > available and not worker_threads:
        worker_threads = SHARED_POOL_THREADS
        log(f"N={count}: {needed} threads do not fit in {available}: one shared action pool "
            f"of {worker_threads} threads per process")  # fmt: skip
        needed, available = thread_budget(count, processes, worker_threads)
    if needed > available:
        reason = f"needs ~{needed} threads, the machine can give {available} (pid_max etc.)"
        log(f"N={count}: skipped: {reason}")
        return {"skipped": reason}
    prefix = f"b{count}x{uuid.uuid4().hex[:4]}"
    res: dict[str, Any] = {
        "processes": processes,
        "worker_threads": worker_threads,
        "raw": [],
        "full": {d: [] for d in discoveries},
    }
    t = time.monotonic()
    start_nodes(sup, count, prefix, pub, processes, worker_threads)
    res["connect_s"] = round(time.monotonic() - t, 1)
    log(f"N={count}: nodes connected in {res['connect_s']} s ({processes} processes)")
    try:
        current_discovery = measure_fleet(
            sup, portal, key, count, prefix, res, args, discoveries, current_discovery, database
        )
    except FleetUnstable as exc:
        log(f"N={count}: not measured further: {exc}")
        res["unstable"] = str(exc)
    finally:
        stop_child(sup, "nodes")
    res["_discovery"] = current_discovery
    return res


def report(
    results: dict[int, dict[str, Any]],
    discoveries: list[float],
    path: str,
    limits: dict,
    action: str,
) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": limits,
        "action": action,
        "sizes": {str(k): v for k, v in results.items()},
    }
    Path(path).write_text(json.dumps(document, indent=1, default=str))
    default = discoveries[0]
    header = f"{'N':>6} {'procs':>5} {'raw ms':>8}"
    for d in discoveries:
        name = "inv" if d == 0 else f"{d:g}s"
        header += f" {f'full@{name}':>11} {'-discov.':>9} {'ratio':>6}"
    header += f" {'same nodes':>10} {'replies':>11}"
    print(header)
    last_ratio = None
    last_note = ""
    measured = {n: r for n, r in results.items() if not {"skipped", "error", "unstable"} & set(r)}
    for count, res in results.items():
        if count not in measured:
            why = res.get("skipped") or res.get("unstable") or "failed: " + res["error"]
            print(f"{count:>6} {why}")
            continue
        raw = median([r["ms"] for r in res["raw"]])
        line = f"{count:>6} {res['processes']:>5} {raw:>8.0f}"
        replies = []
        same = ["yes" if all(r["same_nodes"] for r in res["raw"]) else "NO"]
        for d in discoveries:
            runs = res["full"][d]
            full = median([r["ms"] for r in runs])
            minus = median([r["ms"] - r.get("discovery_ms", 0) for r in runs])
            replies.append(min(r["replies"] for r in runs) if runs else 0)
            same.append("yes" if all(r["same_nodes"] for r in runs) else "NO")
            ratio = full / raw
            # A run that did not reach every node timed its end, not its last reply: the
            # ratio is then a lower bound, marked with "*".
            short = sum(1 for r in runs if r["replies"] < count)
            if d == default and count == max(measured):
                last_ratio = ratio
                if short:
                    last_note = f" (* {short} of {len(runs)} runs did not reach all {count})"
            line += f" {full:>11.0f} {minus:>9.0f} {ratio:>5.2f}{'*' if short else ' '}"
        line += f" {'/'.join(same):>10} {'/'.join(map(str, replies)):>11}"
        print(line)
    print(
        "(procs = simulator processes; full = POST to last reply on the WebSocket, inv = "
        "inventory discovery; -discov. = full minus the worker's discovery phase; ratio = "
        "full/raw, * = some runs did not reach every node (the job ended at its timeout); "
        "same nodes = raw, then each full setting: every run answered by exactly the fleet "
        "started (a short broadcast discovery finds only part of it); "
        "replies = fewest distinct identities on the WebSocket per setting)"
    )
    if last_ratio is not None:
        print(f"ratio full/raw at {max(measured)} nodes: {last_ratio:.2f}{last_note}")


if __name__ == "__main__":
    raise SystemExit(main())
