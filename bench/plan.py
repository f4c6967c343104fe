"""Job plan benchmark: what planning a job costs per submit, at an inventory of many nodes.

    .venv/bin/python bench/plan.py [--nodes 10000] [--runs 50] [--sqlite] [--output FILE]

Fills a throwaway database with ``--nodes`` inventory nodes (the simulator's facts: customers,
datacenters, roles), then times in this process, per request, median and p95 over ``--runs``:

* **plan, unscoped**: ``plan_job`` for an operator whose grant has no scope (inputs checked,
  permit, the inventory count of the targets, the confirmation rules) and ``require_targets``;
* **plan, scoped**: the same for an operator scoped to one customer (one more COUNT: how many
  the filter alone matches, for "your filter matches 7; 1 inside your scope");
* **submit**: ``submit_job`` end to end (plan, store the job and its audit event; the Celery
  task is not sent), the operator's whole wait before the job page.

It also counts the SQL queries of each. Baseline: a bare stomp.py round trip through the
embedded broker, measured in the same run (``bench/registrations.py``): the figures are also
given as ratios to it. Every step checks its outcome, so a smoke run (``--nodes 50 --runs 3
--sqlite``, as the test suite does) proves the script still works.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.registrations import baseline_round_trip  # noqa: E402
from bench.support import throwaway_portal  # noqa: E402

CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli"]
FILTER = "role=web or role=db"


def fill(nodes: int) -> None:
    from django.utils import timezone

    from portal.inventory.models import Node

    rng = random.Random(7)
    now = timezone.now()
    Node.objects.bulk_create(
        (
            Node(
                identity=f"node{n:06d}.example",
                facts={
                    "customer": rng.choice(CUSTOMERS),
                    "datacenter": rng.choice("abcd"),
                    "role": rng.choice(["web", "db", "cache"]),
                },
                classes=["base"],
                collectives=["mcollective"],
                first_seen=now,
                last_seen=now,
                registered_at=now,
            )
            for n in range(nodes)
        ),
        batch_size=2000,
    )


def operators() -> dict[str, Any]:
    from django.contrib.auth.models import Group, User

    from portal.rbac.services import GrantSpec, set_grant, sync_catalog

    sync_catalog()
    users = {}
    for name, scope in (("unscoped", ""), ("scoped", "customer=acme")):
        user = User.objects.create_user(f"bench-{name}", password=uuid.uuid4().hex)
        role, _ = Group.objects.get_or_create(name=f"bench-{name}")
        set_grant(GrantSpec(role.name, "rpcutil", None, scope), actor=None)
        user.groups.add(role)
        users[name] = user
    return users


def timed(step: Callable[[], Any], runs: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    step()  # warm-up
    with CaptureQueriesContext(connection) as queries:
        step()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return samples, len(queries.captured_queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--output", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)

    with throwaway_portal("plan", sqlite=args.sqlite):
        fill(args.nodes)
        users = operators()
        figures = measure(users, args.runs)
        baseline = baseline_round_trip()

    print(f"{args.nodes} nodes, {'SQLite' if args.sqlite else 'PostgreSQL'}, {args.runs} runs")
    print(f"baseline: bare stomp.py round trip (embedded broker) median {baseline * 1e6:.0f} us")
    print(
        f"{'step':<18}{'targets':>8}{'queries':>9}{'median ms':>11}{'p95 ms':>9}{'x baseline':>12}"
    )
    for name, row in figures.items():
        print(
            f"{name:<18}{row['targets']:>8}{row['queries']:>9}{row['median_s'] * 1e3:>11.2f}"
            f"{row['p95_s'] * 1e3:>9.2f}{row['median_s'] / baseline:>12.1f}"
        )
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {"nodes": args.nodes, "runs": args.runs, "baseline_s": baseline, **figures},
                indent=2,
            )
        )
    return 0


def measure(users: dict[str, Any], runs: int) -> dict[str, dict[str, Any]]:
    from portal.jobs.models import Job
    from portal.jobs.plans import plan_job
    from portal.jobs.services import submit_job
    from portal.jobs.validation import parse_filter_text

    job_filter = parse_filter_text(FILTER)
    figures: dict[str, dict[str, Any]] = {}

    def plan_for(user: Any) -> Callable[[], Any]:
        def step() -> Any:
            plan = plan_job(user, "rpcutil", "ping", job_filter, filter_text=FILTER, inputs={},
                            options={}, source=Job.Source.API)  # fmt: skip
            plan.require_targets()
            return plan

        return step

    for name in ("unscoped", "scoped"):
        plan = plan_for(users[name])()
        assert plan.estimate.count > 0, f"the {name} plan reaches no node"
        samples, queries = timed(plan_for(users[name]), runs)
        figures[f"plan, {name}"] = summary(samples, queries, plan.estimate.count)

    def submit() -> Job:
        return submit_job(user=users["scoped"], agent="rpcutil", action="ping", inputs={},
                          filter=job_filter, filter_text=FILTER, source=Job.Source.API)  # fmt: skip

    with mock.patch("portal.jobs.lifecycle.celery_app.send_task"):
        job = submit()
        assert job.status == Job.Status.QUEUED
        samples, queries = timed(submit, runs)
    figures["submit, scoped"] = summary(
        samples, queries, plan_for(users["scoped"])().estimate.count
    )
    assert Job.objects.count() == runs + 3  # the first, the warm-up and the counted one, the runs
    return figures


def summary(samples: list[float], queries: int, targets: int) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "targets": targets,
        "queries": queries,
        "median_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


if __name__ == "__main__":
    sys.exit(main())
