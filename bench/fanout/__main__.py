"""The command: ``python -m bench.fanout --help`` (the package's docstring has the details)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bench.fanout
from bench.fanout.common import ACTIONS, RESULTS, SHARED_POOL_THREADS, log
from bench.fanout.machine import machine_limits
from bench.fanout.measure import measure_size
from bench.fanout.report import report
from bench.fanout.stacks import STACKS, open_stack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=(bench.fanout.__doc__ or "").split("\n\n")[0],
    )
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
    parser.add_argument(
        "--stack",
        choices=STACKS,
        default="activemq",
        help="activemq: the ActiveMQ network, PostgreSQL and Redis, as deployed; embedded: "
        "the embedded STOMP broker, SQLite, no Redis (the demo's profile; a smoke run)",
    )
    parser.add_argument("--json", default=str(RESULTS / "fanout.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    discoveries = [float(d) for d in args.discovery.split(",") if d.strip()]
    limits = machine_limits()
    log(f"machine: {limits}")

    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    results: dict[int, dict[str, Any]] = {}
    failed = True  # until the portal is up
    try:
        with open_stack(args.stack, tmp, discoveries[0]) as bench:
            failed = False
            for count in sizes:
                try:
                    results[count] = measure_size(bench, count, args, discoveries)
                except Exception as exc:  # one size failing must not lose the others
                    log(f"N={count}: failed: {exc!r}")
                    failed = True
                    results[count] = {"error": repr(exc)}
    finally:
        if failed:
            log(f"logs of the portal and the simulator kept in {tmp / 'logs'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    report(results, discoveries, args.json, limits, args.action, args.stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
