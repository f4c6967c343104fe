"""One N: start the fleet, check it answers whole, measure raw and full against it, stop it."""

from __future__ import annotations

import argparse
import math
import time
import uuid
from typing import Any

from agents.simulator import fleet_identities
from bench.fanout.common import DATACENTERS, SHARED_POOL_THREADS, load1, log
from bench.fanout.full import measure_full
from bench.fanout.machine import cpu_snapshot, cpu_used, fleet_resources, thread_budget
from bench.fanout.processes import restart_worker, start_nodes, stop_child, wait_registered
from bench.fanout.pyspy import profile_full
from bench.fanout.raw import measure_raw
from bench.fanout.stacks import BenchStack


class FleetUnstable(RuntimeError):
    """The simulated fleet stopped answering whole (lost connections): this N is not measured."""


def check_nodes(result: dict, fleet: set[str]) -> dict:
    """Replace the reply identities by how they compare with the fleet that was started."""
    seen = result.pop("identities")
    result["same_nodes"] = seen == fleet
    if seen != fleet:
        result["missing"] = len(fleet - seen)
        result["strangers"] = len(seen - fleet)
    return result


def conditions(result: dict) -> str:
    """The load and CPU seconds of one measurement, for the log."""
    cpu = ", ".join(f"{k} {v:g}" for k, v in result["cpu_s"].items() if v)
    return f"load {result['load'][0]} -> {result['load'][1]}, cpu s: {cpu}"


def measure_fleet(
    bench: BenchStack,
    count: int,
    prefix: str,
    res: dict[str, Any],
    args: argparse.Namespace,
    discoveries: list[float],
) -> None:
    """Raw and full measurements against the running fleet, into ``res``; the worker may be
    left with another discovery timeout (``bench.discovery``). Raises FleetUnstable when
    nodes stop answering."""
    fleet = fleet_identities(count, DATACENTERS, prefix)
    reg = wait_registered(bench, prefix, count, timeout=max(60, count * 0.05))
    res["register_s"] = round(reg, 1)
    log(f"N={count}: all registered {reg:.1f} s later")
    # Warm-up (JIT, broker consumers, caches); a fleet that just connected may need
    # a few seconds before the bridges carry its subscriptions.
    raw_timeout = max(30.0, count * 0.01)
    warm: dict[str, Any] = {"replies": 0, "ms": 0.0, "load": [load1(), load1()]}
    for attempt in range(2):
        try:
            warm = measure_raw(bench, prefix, count, timeout=raw_timeout, action=args.action)
        except RuntimeError as exc:
            log(f"N={count} warm-up #{attempt + 1}: {exc}; waiting")
            time.sleep(5)
            continue
        if warm["replies"] == count:
            break
        log(f"N={count} warm-up #{attempt + 1}: {warm['replies']} of {count} replies")
        time.sleep(5)
    res["resources"] = fleet_resources(bench)
    log(f"N={count}: resources {res['resources']}")
    if warm["replies"] < count:
        # Nodes that miss a broadcast have lost their connection (heart-beats starved):
        # measuring on would time a reconnect storm, not the fan-out.
        raise FleetUnstable(
            f"the fleet does not answer whole: {warm['replies']} of {count} replies to "
            f"the last warm-up ({warm['ms']:.0f} ms, load {warm['load'][1]})"
        )
    for i in range(args.repeat):
        before = cpu_snapshot(bench)
        r = measure_raw(bench, prefix, count, timeout=raw_timeout, action=args.action)
        check_nodes(r, fleet)
        r["cpu_s"] = cpu_used(before, cpu_snapshot(bench))
        log(
            f"N={count} raw #{i + 1}: {r['ms']:.0f} ms ({r['replies']} replies, same nodes "
            f"{r['same_nodes']}), {conditions(r)}"
        )
        res["raw"].append(r)
        if r["replies"] < count:
            raise FleetUnstable(f"raw #{i + 1} got {r['replies']} of {count} replies")
    # Alternate the order of discovery settings per N to save a worker restart.
    order = discoveries if bench.discovery == discoveries[0] else discoveries[::-1]
    for discovery in order:
        # 0 stands for inventory discovery: no broadcast, so no timeout to set.
        if discovery and discovery != bench.discovery:
            restart_worker(bench, discovery)
        for i in range(args.repeat):
            before = cpu_snapshot(bench)
            r = measure_full(
                bench.portal, prefix, count, timeout=max(45.0, count * 0.01),
                inventory=not discovery, action=args.action,
            )  # fmt: skip
            r["cpu_s"] = cpu_used(before, cpu_snapshot(bench))
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
        if bench.discovery != discoveries[0] and discoveries[0]:
            restart_worker(bench, discoveries[0])
        tag = f"{count}-d{discoveries[0]:g}" + ("" if args.action == "rpcutil.ping" else "-echo")
        r = profile_full(bench, prefix, count, tag, args.action)
        check_nodes(r, fleet)
        log(f"N={count} profiled run: {r['ms']:.0f} ms, {r['replies']} replies")
        res["profiled"] = r


def measure_size(
    bench: BenchStack, count: int, args: argparse.Namespace, discoveries: list[float]
) -> dict[str, Any]:
    """Start ``count`` nodes, measure raw and full against them, stop them."""
    processes = max(1, math.ceil(count / args.nodes_per_process))
    worker_threads = args.worker_threads
    needed, available = thread_budget(bench, count, processes, worker_threads)
    if needed > available and not worker_threads:
        worker_threads = SHARED_POOL_THREADS
        log(f"N={count}: {needed} threads do not fit in {available}: one shared action pool "
            f"of {worker_threads} threads per process")  # fmt: skip
        needed, available = thread_budget(bench, count, processes, worker_threads)
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
    start_nodes(bench, count, prefix, processes, worker_threads)
    res["connect_s"] = round(time.monotonic() - t, 1)
    log(f"N={count}: nodes connected in {res['connect_s']} s ({processes} processes)")
    try:
        measure_fleet(bench, count, prefix, res, args, discoveries)
    except FleetUnstable as exc:
        log(f"N={count}: not measured further: {exc}")
        res["unstable"] = str(exc)
    finally:
        stop_child(bench.sup, "nodes")
    return res
