"""--profile-at: one more full-pipe run with py-spy attached, and what it spent its time on."""

from __future__ import annotations

import collections
import math
import shutil
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.fanout.common import RESULTS, log
from bench.fanout.full import measure_full
from bench.fanout.machine import children
from bench.fanout.stacks import BenchStack, child_pid


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


def profile_full(bench: BenchStack, prefix: str, count: int, tag: str, action: str) -> dict:
    """One full-pipe job at ``count`` with py-spy attached to the portal's processes and the
    simulator; the summaries under ``profile``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    duration = max(12, math.ceil(count / 1000) * 4)
    spies = {}
    for name in ("worker", "asgi", "nodes", "registrations"):
        # Celery's thread pool runs in the main process: its pid is the child's own. The
        # simulator's shards are alike: one of them stands for all.
        pid = child_pid(bench.sup, name)
        if name == "nodes":
            pid = min(children(pid) or [pid])
        out = RESULTS / f"pyspy-{tag}-{name}.txt"
        spies[name] = (out, py_spy(pid, out, duration, gil_only=name == "nodes"))
    time.sleep(2.0)  # py-spy attaches
    result = measure_full(
        bench.portal, prefix, count, timeout=max(45.0, count * 0.01), action=action
    )
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
