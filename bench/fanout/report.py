"""The outcome: every run in the JSON document, the medians and ratios in a table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    results: dict[int, dict[str, Any]],
    discoveries: list[float],
    path: str,
    limits: dict,
    action: str,
    stack: str,
) -> None:
    """The JSON document at ``path``, and the table of medians on stdout."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": limits,
        "stack": stack,
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
