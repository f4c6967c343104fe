"""Audit history benchmark: export memory and time, page and chart query times, verification.

    .venv/bin/python bench/audit_export.py [--events 1000000] [--runs 5] [--keep]
                                           [--database NAME] [--prune] [--output FILE]

Creates a throwaway PostgreSQL database, migrates it, generates ``--events`` audit events
over 400 days (jobs submitted and finished with inputs, filters, reasons and up to 40 target
nodes each; logins, logouts, failed logins, approvals, grant changes) with a valid hash chain,
and COPYs them in. Then, each in a fresh process:

* exports through the real ASGI application (``/audit/export.csv`` and ``.jsonl``, all events
  and a filtered sixth), reading the streamed body and sampling the process's RSS every 10 ms:
  time, bytes, and the RSS growth over the process's warmed-up baseline; then the same CSV
  from a daphne server over HTTP (the server's RSS sampled); once more in-process under
  tracemalloc for the peak of Python allocations;
* times the timeline's query (``keyset_page``) and the whole page for representative filters,
  and the charts page (median of ``--runs`` after a warm-up), with EXPLAIN ANALYZE of the
  slowest query;
* times ``check_chain`` over every event; with ``--prune``, ``prune_events`` at 365 days.

``--database`` reuses a database loaded by an earlier ``--keep`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import psycopg  # noqa: E402

from harness.databases import POSTGRES_URL, postgres_database  # noqa: E402
from portal.audit.chain import GENESIS, event_hash  # noqa: E402  (pure: no Django needed)

DAYS = 400
AGENTS = {
    "rpcutil": ["ping", "inventory", "get_fact"],
    "service": ["status", "restart", "start", "stop"],
    "package": ["status", "install", "update", "uninstall"],
    "puppet": ["runonce", "status", "enable", "disable"],
    "nrpe": ["runcommand"],
    "process": ["list"],
    "filemgr": ["status", "touch"],
}
ROLES = ["operator", "web-ops", "network", "dba", "manager", "admin"]
SERVICES = ["nginx", "sshd", "postgresql", "haproxy", "redis", "cron", "rsyslog"]
NODE_COUNT = 20_000
GIN_INDEXES = ("audit_nodes_gin", "audit_roles_gin", "audit_search_trgm")


def node_name(index: int) -> str:
    return f"node{index:05d}.dc{'abcd'[index % 4]}.example"


def generate(count: int, rng: random.Random) -> Any:
    """Yield (at, kind, actor, roles, ip, agent, action, job_id, outcome, summary, data, nodes)."""
    start = datetime.now(UTC) - timedelta(days=DAYS)
    step = DAYS * 86400 / count
    operators = [f"op{n:03d}" for n in range(300)]
    op_roles = {
        op: sorted(
            set(rng.sample(ROLES[:4], rng.choice([1, 1, 2])) + (["dba"] if n % 97 == 0 else []))
        )
        for n, op in enumerate(operators)
    }
    job_id = 0
    pending: list[tuple[int, str, str, str, list[str]]] = []
    emitted = 0
    while emitted < count:
        at = start + timedelta(seconds=emitted * step)
        actor = operators[min(int(rng.paretovariate(1.2)) - 1, 299)]
        roles = op_roles[actor]
        ip = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        roll = rng.random()
        if pending and (roll < 0.30 or len(pending) > 50):
            jid, jactor, agent, action, nodes = pending.pop(0)
            failed = rng.choice([0] * 8 + [1, len(nodes) // 2])
            silent = rng.choice([0] * 9 + [1])
            status = rng.choice(["completed"] * 30 + ["failed", "interrupted", "cancelled"])
            data = {
                "counts": {
                    "expected": len(nodes),
                    "replied": len(nodes) - silent,
                    "ok": len(nodes) - silent - failed,
                    "failed": failed,
                    "no_response": silent,
                },
                "error": "" if status == "completed" else f"{status} by the runner",
                "duration": round(rng.uniform(0.2, 40), 3),
            }
            summary = f"{agent} {action}: {status}"
            row = (at, "job.finished", jactor, op_roles[jactor], "", agent, action, jid, status,
                   summary, data, nodes)  # fmt: skip
        elif roll < 0.62:
            job_id += 1
            agent = rng.choice(list(AGENTS))
            action = rng.choice(AGENTS[agent])
            first = rng.randrange(NODE_COUNT)
            nodes = [node_name((first + k) % NODE_COUNT) for k in range(rng.randint(1, 40))]
            customer = rng.choice(["acme", "globex", "initech", "umbrella"])
            filter_text = f"customer={customer} and role={rng.choice(['web', 'db', 'lb'])}"
            inputs = {"service": rng.choice(SERVICES)} if agent == "service" else {}
            if agent == "package":
                inputs = {"package": rng.choice([*SERVICES, "curl", "openssl"])}
            data = {
                "source": rng.choice(["web", "web", "api", "cli"]),
                "inputs": inputs,
                "filter": filter_text,
                "effective_filter": f"({filter_text}) and datacenter=dc{'abcd'[first % 4]}",
                "scope": "",
                "discovery": "inventory",
                "options": {"batch_size": 0, "limit": 0},
                "reason": f"CHG-{rng.randint(0, 999_999):06d}",
                "needs_approval": False,
            }
            summary = f"{agent} {action} on {filter_text}"
            pending.append((job_id, actor, agent, action, nodes))
            row = (at, "job.submitted", actor, roles, ip, agent, action, job_id, "", summary,
                   data, [])  # fmt: skip
        elif roll < 0.76:
            row = (at, "login", actor, roles, ip, "", "", None, "ok", f"{actor} logged in", {}, [])
        elif roll < 0.88:
            row = (at, "logout", actor, roles, ip, "", "", None, "ok", f"{actor} logged out", {},
                   [])  # fmt: skip
        elif roll < 0.92:
            row = (at, "login.failed", actor, [], ip, "", "", None, "failed",
                   f"failed login as {actor!r}", {"username": actor}, [])  # fmt: skip
        elif roll < 0.96 and job_id:
            decision = rng.choice(["approved", "approved", "rejected", "expired"])
            row = (at, f"approval.{decision}", "mgr01", ["manager"], ip, "service", "restart",
                   rng.randint(1, job_id), decision, f"job approval {decision}",
                   {"comment": ""}, [])  # fmt: skip
        else:
            role = rng.choice(ROLES)
            before = {"role": role, "agent": "service", "actions": "*", "scope": ""}
            after = {**before, "scope": f"customer={rng.choice(['acme', 'globex'])}"}
            row = (at, "grant.changed", "admin", ["admin"], ip, "service", "", None, "",
                   f"grant.changed {role}", {"before": before, "after": after}, [])  # fmt: skip
        emitted += 1
        yield row


def load(url: str, count: int) -> float:
    """COPY ``count`` chained events; the GIN indexes are dropped and rebuilt around it."""
    from importlib import import_module

    migration = import_module("portal.audit.migrations.0002_postgresql")
    rng = random.Random(42)
    columns = (
        "at, kind, actor, roles, source_ip, agent, action, job_id, outcome, summary, data, "
        "nodes, prev_hash, hash"
    )
    started = time.monotonic()
    with psycopg.connect(url) as db, db.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        for name in GIN_INDEXES:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
        prev = GENESIS
        with cur.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
            for index, row in enumerate(generate(count, rng)):
                at, kind, actor, roles, ip, agent, action, job_id, outcome, summary, data, nodes = (
                    row
                )
                fields = {
                    "at": at, "kind": kind, "actor": actor, "roles": roles, "source_ip": ip,
                    "agent": agent, "action": action, "job_id": job_id, "outcome": outcome,
                    "summary": summary, "data": data, "nodes": nodes, "prev_hash": prev,
                }  # fmt: skip
                digest = event_hash(fields)
                copy.write_row(
                    (at, kind, actor, json.dumps(roles), ip, agent, action, job_id, outcome,
                     summary, json.dumps(data), json.dumps(nodes), prev, digest)
                )  # fmt: skip
                prev = digest
                if index and index % 200_000 == 0:
                    print(f"  {index} rows generated", file=sys.stderr)
        db.commit()
        loaded = time.monotonic()
        print(f"  COPY done in {loaded - started:.0f} s; building GIN indexes", file=sys.stderr)
        for sql in migration.INDEXES:
            cur.execute(sql)
        cur.execute(migration.SEARCH_INDEX)
        db.commit()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE audit_auditevent")
    return time.monotonic() - started


# -- child processes ---------------------------------------------------------------------------


def _django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    import django

    django.setup()


def _manager() -> Any:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="bench-manager", defaults={"is_superuser": True})
    return user


def _session_cookie() -> str:
    """A logged-in session of the bench's manager, as a Cookie header value."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    user = _manager()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _asgi_get(app: Any, path: str, query: str, cookie: str) -> dict[str, Any]:
    """GET through the ASGI application, counting (not keeping) the streamed body."""
    import asyncio

    done = asyncio.Event()
    asked = False
    stats: dict[str, Any] = {"status": None, "bytes": 0, "lines": 0, "first_byte": None}

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            stats["status"] = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body and stats["first_byte"] is None:
                stats["first_byte"] = time.perf_counter()
            stats["bytes"] += len(body)
            stats["lines"] += body.count(b"\n")
            if not message.get("more_body"):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return stats


def child_export(url: str, fmt: str, query: str, trace: bool) -> dict[str, Any]:
    import asyncio
    import gc
    import threading
    import tracemalloc

    _django(url)
    from django.core.asgi import get_asgi_application

    cookie = _session_cookie()
    app = get_asgi_application()
    path = f"/audit/export.{fmt}"
    warm = asyncio.run(_asgi_get(app, path, "kind=no.such.kind", cookie))  # imports, caches
    assert warm["status"] == 200, warm
    gc.collect()
    baseline = _rss()
    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    stats = asyncio.run(_asgi_get(app, path, query, cookie))
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    sampling = False
    sampler.join()
    rows = stats["lines"] - (1 if fmt == "csv" else 0)
    return {
        "format": fmt,
        "query": query,
        "status": stats["status"],
        "rows": rows,
        "bytes": stats["bytes"],
        "seconds": elapsed,
        "first_byte_s": (stats["first_byte"] - started) if stats["first_byte"] else None,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "traced_peak": traced,
    }


def child_pages(url: str, runs: int) -> dict[str, Any]:
    _django(url)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from portal.audit.filtersets import TimelineFilter
    from portal.audit.models import AuditEvent
    from portal.audit.querysets import keyset_page
    from portal.audit.timeouts import time_limit

    user = _manager()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    now = timezone.now()
    total = AuditEvent.objects.count()
    middle = AuditEvent.objects.order_by("id").values_list("id", flat=True)[total // 2]
    day = (now - timedelta(days=200)).date()
    recent = (now - timedelta(days=90)).date()
    submitted = AuditEvent.objects.filter(kind="job.submitted").order_by("id")
    rare_reason = submitted[submitted.count() // 3].data["reason"]
    cases = [
        ("newest page", {}),
        ("deep page (before the middle id)", {"before": str(middle)}),
        ("operator", {"operator": "op007"}),
        ("rare role", {"role": "dba"}),
        ("agent", {"agent": "service"}),
        ("agent + action", {"agent": "package", "action": "install"}),
        ("outcome", {"outcome": "failed"}),
        ("kind", {"kind": "login.failed"}),
        ("kind group", {"kind": "approval.*"}),
        ("node", {"node": node_name(4242)}),
        ("one day, 200 days ago", {"from": str(day), "to": str(day)}),
        ("search, common word", {"q": "nginx"}),
        ("search, one ticket", {"q": rare_reason}),
        ("search, no match", {"q": "zz-no-such-text"}),
        (
            "operator + agent + 90 days",
            {"operator": "op007", "agent": "service", "from": str(recent)},
        ),
        ("node + search", {"node": node_name(4242), "q": "restart"}),
    ]
    results = []
    slowest: tuple[float, str, Any] = (0.0, "", None)
    for name, params in cases:
        filters = TimelineFilter.from_params(params)
        before = int(params["before"]) if "before" in params else None

        def query(filters: TimelineFilter = filters, before: int | None = before) -> int:
            # As the timeline view asks it.
            with time_limit(30):
                events = filters.apply(AuditEvent.objects.all())
                page = keyset_page(events, before, None, selective=bool(filters.node))[0]
                return len(page)

        shown = query()
        query_ms = []
        for _ in range(runs):
            t = time.perf_counter()
            query()
            query_ms.append((time.perf_counter() - t) * 1000)
        page_ms = []
        for _ in range(runs):
            t = time.perf_counter()
            response = client.get("/audit/", params)
            page_ms.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (name, response.status_code)
        median = statistics.median(query_ms)
        results.append(
            {"case": name, "params": params, "shown": shown, "query_ms": median,
             "query_max_ms": max(query_ms), "page_ms": statistics.median(page_ms)}
        )  # fmt: skip
        if median > slowest[0]:
            with CaptureQueriesContext(connection) as captured:
                query()
            page_sql = [q["sql"] for q in captured.captured_queries if "LIMIT 51" in q["sql"]]
            slowest = (median, name, page_sql[-1])
    charts = []
    for name, params in [
        ("charts, 30 days", {}),
        ("charts, 366 days", {"from": str((now - timedelta(days=365)).date())}),
        ("charts, agent=service, 90 days", {"agent": "service", "from": str(recent)}),
    ]:
        client.get("/audit/charts/", params)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            response = client.get("/audit/charts/", params)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (name, response.content[:500])
        charts.append({"case": name, "page_ms": statistics.median(times)})
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest[2])
        plan = [row[0] for row in cur.fetchall()]
    return {"total": total, "cases": results, "charts": charts, "slowest": slowest[1],
            "plan": plan}  # fmt: skip


def child_session(url: str) -> dict[str, Any]:
    _django(url)
    return {"cookie": _session_cookie()}


def daphne_export(url: str, var_dir: Path) -> dict[str, Any]:
    """Download /audit/export.csv from a real daphne server, sampling the server's RSS."""
    import socket
    import threading
    import urllib.request

    cookie = spawn("session", url)["cookie"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url, "SWITCHBOARD_VAR_DIR": str(var_dir)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
         "portal.asgi:application"],
        cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/login/", timeout=1).read()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        warm = urllib.request.Request(  # noqa: S310
            base + "/audit/export.csv?kind=no.such.kind", headers={"Cookie": cookie}
        )
        urllib.request.urlopen(warm).read()  # noqa: S310
        baseline = peak = _rss(server.pid)
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, _rss(server.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        request = urllib.request.Request(base + "/audit/export.csv", headers={"Cookie": cookie})  # noqa: S310
        started = time.perf_counter()
        first_byte, size, lines = None, 0, 0
        with urllib.request.urlopen(request) as response:  # noqa: S310
            while chunk := response.read(1 << 16):
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                size += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        sampling = False
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"rows": lines - 1, "bytes": size, "seconds": elapsed, "first_byte_s": first_byte,
            "baseline_rss": baseline, "peak_rss": peak}  # fmt: skip


def child_verify(url: str) -> dict[str, Any]:
    _django(url)
    from portal.audit.services import check_chain

    started = time.perf_counter()
    report = check_chain()
    return {"checked": report.checked, "intact": report.intact,
            "seconds": time.perf_counter() - started}  # fmt: skip


def child_prune(url: str, archive_dir: str) -> dict[str, Any]:
    _django(url)
    from portal.audit.services import check_chain, prune_events

    started = time.perf_counter()
    result = prune_events(retention_days=365, archive_dir=Path(archive_dir))
    pruned = time.perf_counter() - started
    report = check_chain()
    return {"deleted": result.deleted, "seconds": pruned, "archive": str(result.archive),
            "archive_bytes": result.archive.stat().st_size if result.archive else 0,
            "intact_after": report.intact, "checked_after": report.checked}  # fmt: skip


def spawn(*args: str) -> dict[str, Any]:
    # The database through the environment, as the portal reads it when settings load.
    env = {**os.environ, "DATABASE_URL": args[1], "DJANGO_SETTINGS_MODULE": "portal.settings"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], cwd=BASE_DIR, capture_output=True,
        text=True, check=False, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--database", help="use this already loaded database (implies --keep)")
    parser.add_argument("--prune", action="store_true", help="also time prune_audit at 365 days")
    parser.add_argument("--output", type=Path, help="also write the report here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, url, *rest = args.child
        if kind == "export":
            result = child_export(url, rest[0], rest[1], rest[2] == "trace")
        elif kind == "pages":
            result = child_pages(url, int(rest[0]))
        elif kind == "verify":
            result = child_verify(url)
        elif kind == "session":
            result = child_session(url)
        else:
            result = child_prune(url, rest[0])
        print(json.dumps(result, default=str))
        return 0

    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with ExitStack() as cleanup:
        if args.database:  # loaded by an earlier --keep run: kept
            url = POSTGRES_URL.format(database=args.database)
        else:
            url = cleanup.enter_context(
                postgres_database("switchboard_audit_bench", keep=args.keep)
            )
        database = url.rsplit("/", 1)[1]
        if not args.database:
            env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "portal.settings"}
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=BASE_DIR, env=env, check=True, capture_output=True,
            )  # fmt: skip
            print(f"database {database}: migrated; loading {args.events} events", file=sys.stderr)
            seconds = load(url, args.events)
            report(f"generated and loaded {args.events} chained events in {seconds:.0f} s "
                   "(Python hashing + COPY + GIN index builds + VACUUM ANALYZE)")  # fmt: skip
        with psycopg.connect(url) as db:
            version = db.execute("SHOW server_version").fetchone()[0]
            size = db.execute("SELECT pg_total_relation_size('audit_auditevent')").fetchone()[0]
            count = db.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]
        report(f"PostgreSQL {version}; audit_auditevent: {count} rows, {mib(size)} with indexes")
        report(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        report()

        report("Export through the ASGI application (fresh process each; RSS sampled every 10 ms)")
        report(f"{'export':<34} {'rows':>9} {'bytes':>11} {'time s':>7} {'1st byte s':>10} "
               f"{'RSS base':>10} {'RSS peak':>10} {'growth':>10}")  # fmt: skip
        exports = [("csv", ""), ("jsonl", ""), ("csv", "agent=service")]
        for fmt, query in exports:
            r = spawn("export", url, fmt, query, "rss")
            assert r["status"] == 200, r
            label = f"{fmt} {query or '(all events)'}"
            report(
                f"{label:<34} {r['rows']:>9} {r['bytes']:>11} {r['seconds']:>7.1f} "
                f"{r['first_byte_s']:>10.2f} {mib(r['baseline_rss']):>10} "
                f"{mib(r['peak_rss']):>10} {mib(r['peak_rss'] - r['baseline_rss']):>10}"
            )
        var_dir = BASE_DIR / "var" / f"bench-{database}"
        r = daphne_export(url, var_dir)
        label = "csv (all), daphne over HTTP"
        report(
            f"{label:<34} {r['rows']:>9} {r['bytes']:>11} {r['seconds']:>7.1f} "
            f"{r['first_byte_s']:>10.2f} {mib(r['baseline_rss']):>10} "
            f"{mib(r['peak_rss']):>10} {mib(r['peak_rss'] - r['baseline_rss']):>10}"
        )
        r = spawn("export", url, "csv", "", "trace")
        report(
            f"tracemalloc, csv (all events): peak of Python allocations during the export "
            f"{mib(r['traced_peak'])} for {r['rows']} rows ({r['seconds']:.1f} s under tracing)"
        )
        report()

        pages = spawn("pages", url, str(args.runs))
        report(
            f"Timeline at {pages['total']} events: keyset_page() query and the whole page "
            f"(test client, session + render), median of {args.runs}"
        )
        report(f"{'case':<36} {'shown':>5} {'query ms':>9} {'max ms':>8} {'page ms':>8}")
        for c in pages["cases"]:
            report(
                f"{c['case']:<36} {c['shown']:>5} {c['query_ms']:>9.1f} "
                f"{c['query_max_ms']:>8.1f} {c['page_ms']:>8.1f}"
            )
        for c in pages["charts"]:
            report(f"{c['case']:<36} {'':>5} {'':>9} {'':>8} {c['page_ms']:>8.1f}")
        report()
        report(f"EXPLAIN ANALYZE of the slowest timeline query ({pages['slowest']}):")
        for line in pages["plan"]:
            report("  " + line)
        report()

        v = spawn("verify", url)
        report(f"check_chain (verify_audit): {v['checked']} events, intact={v['intact']}, "
               f"{v['seconds']:.1f} s")  # fmt: skip
        if args.prune:
            archive_dir = var_dir / "audit-archive"
            p = spawn("prune", url, str(archive_dir))
            report(
                f"prune_events(365 days): {p['deleted']} events archived ({mib(p['archive_bytes'])}"
                f" gzipped) and deleted in {p['seconds']:.1f} s; chain intact after: "
                f"{p['intact_after']} ({p['checked_after']} events)"
            )
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
