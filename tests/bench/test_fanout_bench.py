"""bench/fanout starts its stack and checks its own outcome at a tiny size (not a timing).

On the embedded profile (``--stack embedded``: the embedded STOMP broker, SQLite, no Redis),
so it needs nothing outside the checkout; two simulator processes, both discovery settings
(inventory, then a broadcast one after a worker restart).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
NODES = 8

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_fanout_benchmark_runs_at_a_tiny_size_on_the_embedded_stack(tmp_path: Path) -> None:
    output = tmp_path / "fanout.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--stack", "embedded", "--nodes", str(NODES),
         "--nodes-per-process", "4", "--repeat", "1", "--discovery", "0,1.0",
         "--json", str(output)],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ratio full/raw at {NODES} nodes:" in result.stdout, result.stdout + result.stderr
    figures = json.loads(output.read_text())
    assert figures["stack"] == "embedded" and figures["action"] == "rpcutil.ping"
    size = figures["sizes"][str(NODES)]
    assert not {"skipped", "error", "unstable"} & set(size), size
    assert size["processes"] == 2 and size["resources"]["simulator_processes"] == 2
    assert size["resources"]["broker"]["threads"] > 0  # the embedded broker, measured
    (raw,) = size["raw"]
    assert raw["replies"] == NODES and raw["same_nodes"] and raw["ms"] > 0
    assert set(size["full"]) == {"0.0", "1.0"}
    for discovery, (full,) in size["full"].items():
        assert full["status"] == "completed", (discovery, full)
        assert full["replies"] == NODES and full["same_nodes"], (discovery, full)
        assert full["counts"]["replied"] == full["counts"]["expected"] == NODES
        assert full["ms"] >= full["post_ms"] > 0
        # The worker's phases, read back from the job's row (SQLite's text datetimes).
        assert full["discovery_ms"] >= 0 and full["collect_ms"] >= 0
    # The restarted worker's broadcast discovery waits out its 1 s timeout.
    assert size["full"]["1.0"][0]["discovery_ms"] >= 1000
