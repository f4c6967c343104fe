"""What the fan-out benchmark's modules share: the request, the fleet's shape, the log."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
RESULTS = BASE_DIR / "bench" / "results"
DATACENTERS = ["a", "b"]
# The demo's noc is scoped to one customer; the benchmark needs every node.
BENCH_USER = "admin"
SHARED_POOL_THREADS = 16
# What --action may name: the request's inputs. rpcutil ping (the DDL's 5 s timeout) is the
# default; echo echo (15 s) lets a job wait for a fleet slower than 5 s.
ACTIONS: dict[str, dict[str, Any]] = {"rpcutil.ping": {}, "echo.echo": {"message": "bench"}}


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def load1() -> float:
    return round(os.getloadavg()[0], 2)
