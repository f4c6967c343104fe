"""The processes a measurement starts, restarts and stops: the simulated fleet, the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress

from bench.fanout.stacks import BenchStack
from harness.stacks import ENROLMENT_TOKEN
from portal.core import stack
from portal.core.supervisor import Supervisor


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


def start_nodes(
    bench: BenchStack, count: int, prefix: str, processes: int, worker_threads: int
) -> None:
    login, passcode = bench.node_login
    stack.start_simulator(
        bench.sup,
        bench.datacenters,
        count,
        seed=7,
        login=login,
        passcode=passcode,
        trusted_key=bench.trusted_key,
        identity_prefix=prefix,
        processes=processes,
        worker_threads=worker_threads,
        enrolment_token=ENROLMENT_TOKEN,
    )


def restart_worker(bench: BenchStack, discovery: float) -> None:
    """A new Celery worker with SWITCHBOARD_DISCOVERY_TIMEOUT=``discovery``."""
    stop_child(bench.sup, "worker")
    env = {**bench.portal.env, "SWITCHBOARD_DISCOVERY_TIMEOUT": str(discovery)}
    stack.start_worker(bench.sup, env=env)
    bench.discovery = discovery


def wait_registered(bench: BenchStack, prefix: str, count: int, timeout: float) -> float:
    """Wait until the inventory holds all ``count`` nodes; returns seconds. A node has its
    row once its enrolment is accepted (by this run's token), its key pinned."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        (n,) = bench.portal.query(
            "SELECT count(*) FROM inventory_node WHERE identity LIKE %s", prefix + "%"
        )[0]
        if n >= count:
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"only {n} of {count} nodes registered within {timeout:.0f} s")
