"""The machine under the run, read from /proc: limits, threads, memory, CPU seconds per part."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.fanout.stacks import BenchStack, child_pid

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def thread_budget(
    bench: BenchStack, count: int, processes: int, worker_threads: int
) -> tuple[int, int]:
    """(threads the fleet needs, threads the machine can still give it).

    A node has stomp.py's receiver and heart-beat threads plus its action pool's thread (or
    a share of one pool per process), and on the embedded broker a thread of the broker's;
    the threads-per-task limit is the smallest of pid_max (every thread takes an id),
    threads-max and ulimit -u (per user).
    """
    per_node = (2 if worker_threads else 3) + bench.broker_threads_per_node
    needed = count * per_node + processes * (worker_threads + 70)
    limits = [
        _read_int("/proc/sys/kernel/pid_max"),
        _read_int("/proc/sys/kernel/threads-max"),
    ]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if nproc != resource.RLIM_INFINITY:
        limits.append(nproc)
    available = min(x for x in limits if x > 0) - machine_threads() - bench.thread_headroom
    return needed, available


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                fields[key] = int(value.split()[0])
    return fields


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
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


def fleet_resources(bench: BenchStack) -> dict[str, Any]:
    """Threads and memory of the simulator processes and the brokers, at this moment."""
    parent = child_pid(bench.sup, "nodes")
    shards = children(parent) or [parent]
    stats = [_status(pid) for pid in shards]
    result: dict[str, Any] = {
        "simulator_processes": len(shards),
        "simulator_threads": sum(s.get("Threads", 0) for s in stats),
        "simulator_rss_mb": round(sum(s.get("VmRSS", 0) for s in stats) / 1024),
        "machine_threads": machine_threads(),
    }
    for name, pid in bench.broker_pids().items():
        st = _status(pid)
        result[name] = {
            "threads": st.get("Threads"),
            "rss_mb": round(st.get("VmRSS", 0) / 1024),
            "old_gen_mb": old_gen_mb(pid) if bench.name == "activemq" else None,
            "fds": len(os.listdir(f"/proc/{pid}/fd")) if Path(f"/proc/{pid}").exists() else 0,
        }
    return result


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


def cpu_snapshot(bench: BenchStack) -> dict[str, dict[int, int]]:
    """CPU ticks used so far by each process of each part of the run (``machine``: all)."""
    parts: dict[str, list[int]] = {}
    for child in bench.sup.children:
        if child.process is not None:
            parts[child.name] = [child.process.pid]
    with suppress(KeyError):
        parts["nodes"] += children(parts["nodes"][0])
    for name, pid in bench.broker_pids().items():
        parts[name] = [pid]
    if bench.database:
        # PostgreSQL backends name their database in their process title.
        parts["postgres"] = _pids_matching(f" {bench.database} ")
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
