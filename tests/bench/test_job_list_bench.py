"""bench/job_list.py fills, times and checks its own outcome at a tiny size (not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

# Starts the benchmark as its own process, with its own throwaway portal.
pytestmark = pytest.mark.integration


def test_the_job_list_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "bench/job_list.py", "--jobs", "300", "--repeats", "2", "--sqlite",
         "--output", str(output)],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "slowest p95:" in result.stdout
    figures = json.loads(output.read_text())
    assert figures["jobs"] == 300 and figures["database"].startswith("SQLite")
    assert figures["users"]["manager"]["visible"] == 300
    assert 0 < figures["users"]["operator"]["visible"] < 300
    assert set(figures["baseline"]) == {"operator", "manager"}
    assert all(b["p50_ms"] > 0 for b in figures["baseline"].values())
    cases = {(c["user"], c["case"]) for c in figures["cases"]}
    for user in ("operator", "manager"):
        assert {(user, "first page"), (user, "status failed"), (user, "reason: one ticket"),
                (user, "failed service jobs, 90 days")} <= cases  # fmt: skip
    first = next(c for c in figures["cases"] if c["case"] == "first page")
    assert first["shown"] == 50 and first["p95_ms"] >= first["p50_ms"] > 0
    assert first["p50_x"] == first["p50_ms"] / figures["baseline"][first["user"]]["p50_ms"]
    assert set(figures["old_paginator_query_ms"]) == {"page 1", "page 1000"}
