"""Jobs list benchmark: the list page at 100,000 jobs, per filter, p50 and p95 per page.

    .venv/bin/python bench/job_list.py [--jobs 100000] [--repeats 40] [--sqlite] [--keep]
                                       [--output FILE]

Fills a throwaway database (PostgreSQL, or SQLite with ``--sqlite``) with ``--jobs`` jobs
submitted over a year by 240 operators in 12 team roles (most in one, some in two; a few
operators submit most jobs), with the statuses, agents and actions, reasons (INC-/CHG-
tickets, free text, none), node lists and counters real jobs have. Then, through Django's
test client (session, middleware, view, template: the whole page), logged in as an operator
of one team role (who sees that team's jobs and their own) and as a manager (who sees all),
it times ``--repeats`` loads of each case after one warm-up: the first page, a deep page
(the 1,000th, or the last the user has, its cursor read from the database), each filter
alone and a combination. p50 and p95 per page are given in ms and as ratios to the
baseline: the login page through the same client (session and middleware, a template, no
job query), timed the same way in the same run. For reference, the old paging (Django's
``Paginator``: COUNT(*) and OFFSET) is timed at pages 1 and 1,000 on the manager's
queryset. PostgreSQL is ANALYZEd after loading, as autovacuum would; SQLite is not (nothing
in the portal runs ANALYZE there). Every page is checked (200, rows shown), so a smoke run
(``--jobs 300 --repeats 2 --sqlite``, as the test suite does) proves the script still works.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.registrations import baseline_round_trip  # noqa: E402
from bench.support import throwaway_portal  # noqa: E402

DAYS = 365
BATCH = 2_000
DEEP_PAGE = 1_000
TEAMS = [
    "web-ops", "dba", "network", "storage", "acme-noc", "globex-noc", "initech-noc",
    "umbrella-noc", "middleware", "security", "batch", "monitoring",
]  # fmt: skip
OPERATORS = 240
# (agent, action, weight, inputs)
ACTIONS = [
    ("rpcutil", "ping", 22, {}),
    ("rpcutil", "inventory", 4, {}),
    ("rpcutil", "get_fact", 5, {"fact": "os"}),
    ("service", "status", 14, {"service": "nginx"}),
    ("service", "restart", 9, {"service": "nginx"}),
    ("service", "start", 2, {"service": "haproxy"}),
    ("service", "stop", 1, {"service": "haproxy"}),
    ("puppet", "runonce", 12, {}),
    ("puppet", "status", 4, {}),
    ("puppet", "disable", 1, {"message": "maintenance"}),
    ("package", "status", 5, {"package": "openssl"}),
    ("package", "install", 2, {"package": "curl"}),
    ("package", "update", 4, {"package": "openssl"}),
    ("nrpe", "runcommand", 8, {"command": "check_disk"}),
    ("process", "list", 3, {"pattern": "java"}),
    ("filemgr", "status", 2, {"file": "/etc/motd"}),
    ("filemgr", "touch", 1, {"file": "/srv/app/restart.flag"}),
    ("echo", "echo", 1, {"message": "hello"}),
]
FINAL_STATUSES = [
    ("completed", 84), ("failed", 8), ("interrupted", 1.5), ("cancelled", 3), ("withdrawn", 0.5),
    ("rejected", 1), ("expired", 1),
]  # fmt: skip
WORDS = ["nginx", "disk", "certificate", "kernel", "reboot", "deploy", "memory", "latency",
         "backup", "patch", "rollout", "alert"]  # fmt: skip
ROW = re.compile(r'<tr>\s*<td><a href="/jobs/(\d+)/">')


def node_names(rng: random.Random) -> list[str]:
    """The nodes a job reached: mostly a handful, sometimes a few hundred or thousands."""
    roll = rng.random()
    count = rng.randint(1, 12) if roll < 0.80 else rng.randint(13, 150) if roll < 0.97 else 0
    if count == 0:
        count = rng.randint(200, 2_000)
    first = rng.randrange(20_000)
    return [f"node{(first + k) % 20_000:05d}.dc{'abcd'[(first + k) % 4]}.example"
            for k in range(count)]  # fmt: skip


def reason_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return f"INC-{rng.randint(1, 999_999):06d} {rng.choice(WORDS)} on {rng.choice(TEAMS)}"
    if roll < 0.70:
        return f"CHG-{rng.randint(1, 99_999):05d}: {rng.choice(WORDS)} {rng.choice(WORDS)}"
    if roll < 0.80:
        return f"{rng.choice(WORDS).capitalize()} check requested by the on-call engineer"
    return ""


def make_people() -> dict[str, Any]:
    """Team roles, operators (one or two teams each), a manager; the bench's two logins."""
    from django.contrib.auth.models import Group, User

    rng = random.Random(11)
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in TEAMS}
    manager_role = Group.objects.get_or_create(name="manager")[0]
    users = User.objects.bulk_create(
        [User(username=f"op{n:03d}", password="!") for n in range(OPERATORS)]  # noqa: S106
    )
    memberships: dict[int, list[Any]] = {}
    through = []
    for n, user in enumerate(users):
        teams = [TEAMS[n % len(TEAMS)]]
        if rng.random() < 0.25:
            teams.append(rng.choice([t for t in TEAMS if t != teams[0]]))
        memberships[user.pk] = [groups[t] for t in teams]
        through += [User.groups.through(user_id=user.pk, group_id=groups[t].pk) for t in teams]
    User.groups.through.objects.bulk_create(through)
    manager = User.objects.create(username="bench-manager", password="!")  # noqa: S106
    manager.groups.add(manager_role)
    # The operator the bench logs in as: one team role, an average submitter.
    operator = users[len(TEAMS) * 3]
    memberships[operator.pk] = memberships[operator.pk][:1]
    User.groups.through.objects.filter(user_id=operator.pk).exclude(
        group_id=memberships[operator.pk][0].pk
    ).delete()
    return {"users": users, "memberships": memberships, "manager": manager, "operator": operator}


def fill_jobs(count: int, people: dict[str, Any]) -> float:
    """``count`` jobs over the last year, oldest first, with their roles; seconds taken."""
    from portal.jobs.models import Job

    rng = random.Random(7)
    users = people["users"]
    # A few operators submit most jobs (Pareto), as on a real NOC.
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(users))]
    rng.shuffle(weights)
    actions = [(agent, action, inputs) for agent, action, _, inputs in ACTIONS]
    action_weights = [weight for *_, weight, _ in ACTIONS]
    statuses = [status for status, _ in FINAL_STATUSES]
    status_weights = [weight for _, weight in FINAL_STATUSES]
    start = datetime.now(UTC) - timedelta(days=DAYS)
    step = DAYS * 86_400 / max(count, 1)
    created_at = Job._meta.get_field("created_at")
    created_at.auto_now_add = False  # the bench sets a year of submission times itself
    started = time.monotonic()
    try:
        made = 0
        while made < count:
            jobs, roles = [], []
            for index in range(made, min(made + BATCH, count)):
                user = rng.choices(users, weights)[0]
                agent, action, inputs = rng.choices(actions, action_weights)[0]
                at = start + timedelta(seconds=index * step + rng.uniform(0, step / 2))
                recent = count - index <= 20
                status = (
                    rng.choice(["queued", "running", "pending_approval"])
                    if recent
                    else (rng.choices(statuses, status_weights)[0])
                )
                nodes = node_names(rng)
                silent = nodes[: rng.choice([0] * 9 + [1, 3])] if status != "queued" else []
                failed = rng.choice([0] * 8 + [1, len(nodes) // 3]) if status == "failed" else 0
                replied = len(nodes) - len(silent) if status != "queued" else 0
                jobs.append(Job(
                    created_by_id=user.pk, source=rng.choice(["web", "web", "api", "cli"]),
                    agent=agent, action=action, inputs=inputs,
                    filter_text=f"customer={rng.choice(['acme', 'globex', 'initech'])} and /web/",
                    typed_filter={"text": "bench"}, filter={"text": "bench"},
                    reason=reason_text(rng), collective="mcollective", timeout=10,
                    discovery_method="inventory", status=status, discovered=nodes,
                    targeted=nodes, no_response=silent, discovered_count=len(nodes),
                    replied_count=replied, ok_count=max(replied - failed, 0),
                    failed_count=failed, sent_count=len(nodes), created_at=at,
                    started_at=at + timedelta(seconds=1),
                    finished_at=None if recent else at + timedelta(seconds=rng.uniform(2, 60)),
                ))  # fmt: skip
                roles.append(people["memberships"][user.pk])
            saved = Job.objects.bulk_create(jobs)
            Job.roles.through.objects.bulk_create(
                Job.roles.through(job_id=job.pk, group_id=group.pk)
                for job, groups in zip(saved, roles, strict=True)
                for group in groups
            )
            made += len(jobs)
            if made % 20_000 == 0:
                print(f"  {made} jobs", file=sys.stderr, flush=True)
    finally:
        created_at.auto_now_add = True
    return time.monotonic() - started


def analyze() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            for table in ("jobs_job", "jobs_job_roles", "auth_user_groups", "auth_user"):
                cur.execute(f"VACUUM ANALYZE {table}")


def cases(user: Any, operator: Any) -> tuple[list[tuple[str, dict[str, str]]], dict[str, Any]]:
    """(name, query) for each case as ``user`` sees the jobs, with values that exist for them
    (a ticket they can see once, a requester of their team), and what they see in all."""
    from portal.jobs.listing import PAGE_SIZE
    from portal.jobs.models import Job

    visible = Job.objects.visible_to(user).order_by("-id")
    total = visible.count()
    # The 1,000th page, or the last one the user has.
    position = min((DEEP_PAGE - 1) * PAGE_SIZE, max(total - 1, 0) // PAGE_SIZE * PAGE_SIZE)
    deep = {"after": str(visible.values_list("id", flat=True)[position - 1])} if position else {}
    sample = visible.filter(reason__startswith="INC-").values_list("reason", flat=True)
    ticket = sample[min(total // 3, sample.count() - 1)].split()[0] if sample.exists() else "INC-1"
    # The busiest submitter the user sees other than the bench operator.
    others = visible.exclude(created_by=operator).values_list("created_by__username", flat=True)
    requester = others[0] if others.exists() else operator.username
    today = datetime.now(UTC).date()
    day = str(today - timedelta(days=200))
    chosen = [
        ("first page", {}),
        (f"deep page ({position // PAGE_SIZE + 1})", deep),
        ("mine", {"mine": "1"}),
        ("role: any of mine", {"role": "mine"}),
        ("status failed", {"status": "failed"}),
        ("status running or queued", {"status": ["running", "queued"]}),
        ("agent service", {"agent": "service"}),
        ("agent + action package.install", {"agent": "package", "action": "install"}),
        ("action restart", {"action": "restart"}),
        ("requester", {"requester": requester}),
        ("reason: one ticket", {"q": ticket}),
        ("reason: common word", {"q": "nginx"}),
        ("reason: no match", {"q": "zz-no-such-reason"}),
        ("one day, 200 days ago", {"since": day, "until": day}),
        ("since 30 days ago", {"since": str(today - timedelta(days=30))}),
        ("failed service jobs, 90 days", {"status": "failed", "agent": "service",
                                          "since": str(today - timedelta(days=90))}),
    ]  # fmt: skip
    return chosen, {"visible": total, "ticket": ticket, "requester": requester}


def time_old_paginator(repeats: int) -> dict[str, float]:
    """The paging the list had before (``Paginator``: COUNT(*), then OFFSET), every job."""
    from django.core.paginator import Paginator

    from portal.jobs.models import Job

    figures = {}
    jobs = Job.objects.select_related("created_by").defer("discovered", "targeted", "not_sent")
    for number in (1, DEEP_PAGE):
        samples = []
        for _ in range(max(repeats // 4, 1)):
            started = time.perf_counter()
            page = Paginator(jobs, 50).get_page(number)
            len(page.object_list)
            samples.append(time.perf_counter() - started)
        figures[f"page {number}"] = statistics.median(samples) * 1000
    return figures


def list_query_plan(client: Any, params: dict[str, Any]) -> list[str]:
    """EXPLAIN ANALYZE of the page's list query (PostgreSQL) or its QUERY PLAN (SQLite)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get("/", params)
    sql = [q["sql"] for q in captured.captured_queries if 'FROM "jobs_job"' in q["sql"]][-1]
    explain = (
        "EXPLAIN (ANALYZE, BUFFERS) "
        if connection.vendor == "postgresql"
        else ("EXPLAIN QUERY PLAN ")
    )
    with connection.cursor() as cur:
        cur.execute(explain + sql)
        return [" ".join(str(part) for part in row) for row in cur.fetchall()]


def time_pages(people: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Every case for both users and the baseline, interleaved round by round, so a machine
    busy for a while slows them all alike."""
    from django.test import Client

    runs: list[dict[str, Any]] = []
    users: dict[str, Any] = {}
    for label in ("operator", "manager"):
        user = people[label]
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        chosen, seen = cases(user, people["operator"])
        users[label] = {"username": user.username, **seen}
        runs.append({"user": label, "case": "baseline: login page", "path": "/login/",
                     "params": {}, "client": client, "samples": []})  # fmt: skip
        runs += [{"user": label, "case": name, "path": "/", "params": params, "client": client,
                  "samples": []} for name, params in chosen]  # fmt: skip
    for run in runs:  # warm-up: imports, templates, the session; and the rows shown
        response = run["client"].get(run["path"], run["params"])
        assert response.status_code == 200, (run["case"], response.status_code)
        run["shown"] = len(ROW.findall(response.content.decode()))
    for _ in range(repeats):
        for run in runs:
            started = time.perf_counter()
            response = run["client"].get(run["path"], run["params"])
            run["samples"].append(time.perf_counter() - started)
            assert response.status_code == 200, (run["case"], response.status_code)
    results = []
    for run in runs:
        results.append({
            "user": run["user"], "case": run["case"], "params": run["params"],
            "shown": run["shown"], "p50_ms": percentile(run["samples"], 0.50) * 1000,
            "p95_ms": percentile(run["samples"], 0.95) * 1000,
        })  # fmt: skip
    slowest = max(
        (r for r in runs if r["path"] == "/"), key=lambda r: percentile(r["samples"], 0.95)
    )
    plan = list_query_plan(slowest["client"], slowest["params"])
    slowest_case = {"user": slowest["user"], "case": slowest["case"], "plan": plan}
    return {"users": users, "results": results, "slowest": slowest_case}


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (p95 of 40 samples is the 38th smallest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[rank - 1]


def database_version() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SHOW server_version")
            return f"PostgreSQL {cur.fetchone()[0]}"
        cur.execute("SELECT sqlite_version()")
        return f"SQLite {cur.fetchone()[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=40, help="timed loads per case and user")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the database (and its URL)")
    parser.add_argument("--output", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)

    with throwaway_portal("job-list", sqlite=args.sqlite, keep=args.keep):
        version = database_version()
        print(f"filling {args.jobs} jobs ({version})...", file=sys.stderr, flush=True)
        people = make_people()
        fill_seconds = fill_jobs(args.jobs, people)
        analyze()
        load_before = os.getloadavg()[0]
        pages = time_pages(people, args.repeats)
        old = time_old_paginator(args.repeats)
        load_after = os.getloadavg()[0]
    stomp_s = baseline_round_trip()

    baselines = {r["user"]: r for r in pages["results"] if r["case"].startswith("baseline")}
    for r in pages["results"]:
        base = baselines[r["user"]]["p50_ms"]
        r["p50_x"] = r["p50_ms"] / base
        r["p95_x"] = r["p95_ms"] / base
    print(f"\n{args.jobs} jobs, {version}, {args.repeats} loads per case (filled in "
          f"{fill_seconds:.0f} s)")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before:.1f} before, "
          f"{load_after:.1f} after")  # fmt: skip
    for label, seen in pages["users"].items():
        print(f"{label} {seen['username']}: sees {seen['visible']} jobs")
    print("baseline: the login page through the same client; ratios are to its p50")
    header = (
        f"{'user':<9}{'case':<34}{'shown':>6}{'p50 ms':>9}{'p95 ms':>9}{'p50 x':>8}{'p95 x':>8}"
    )
    print(header)
    for r in pages["results"]:
        print(f"{r['user']:<9}{r['case']:<34}{r['shown']:>6}{r['p50_ms']:>9.1f}"
              f"{r['p95_ms']:>9.1f}{r['p50_x']:>8.2f}{r['p95_x']:>8.2f}")  # fmt: skip
    worst = max((r for r in pages["results"] if not r["case"].startswith("baseline")),
                key=lambda r: r["p95_ms"])  # fmt: skip
    print(f"slowest p95: {worst['user']} / {worst['case']}: {worst['p95_ms']:.1f} ms "
          f"({worst['p95_x']:.2f} x baseline)")  # fmt: skip
    ratio = worst["p95_ms"] / 1e3 / stomp_s
    print(f"the project's baseline, a bare stomp.py round trip (embedded broker): "
          f"{stomp_s * 1e6:.0f} us; the slowest p95 is {ratio:.0f} x it")  # fmt: skip
    print(
        "old paging (Paginator: COUNT + OFFSET), every job, query only: "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in old.items())
    )
    print(f"plan of the list query, {pages['slowest']['user']} / {pages['slowest']['case']}:")
    for line in pages["slowest"]["plan"]:
        print("  " + line)
    if args.output:
        figures = {
            "jobs": args.jobs, "database": version, "repeats": args.repeats,
            "fill_s": fill_seconds, "load_average": [load_before, load_after],
            "users": pages["users"],
            "baseline": {label: {"p50_ms": b["p50_ms"], "p95_ms": b["p95_ms"]}
                         for label, b in baselines.items()},
            "cases": [r for r in pages["results"] if not r["case"].startswith("baseline")],
            "slowest_p95": {"user": worst["user"], "case": worst["case"],
                            "p95_ms": worst["p95_ms"], "p95_x": worst["p95_x"]},
            "old_paginator_query_ms": old,
            "stomp_round_trip_s": stomp_s,
            "slowest_plan": pages["slowest"],
        }  # fmt: skip
        Path(args.output).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
