"""bench/plan.py starts and checks its own outcome at a tiny size (not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

# Starts the benchmark as its own process, with its own throwaway portal.
pytestmark = pytest.mark.integration


def test_the_plan_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "bench/plan.py", "--nodes", "60", "--runs", "3", "--sqlite",
         "--output", str(output)],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(output.read_text())
    assert figures["nodes"] == 60 and figures["baseline_s"] > 0
    assert set(figures) >= {"plan, unscoped", "plan, scoped", "submit, scoped"}
    assert all(figures[step]["targets"] > 0 for step in ("plan, unscoped", "plan, scoped"))
