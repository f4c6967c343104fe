"""bench/registrations.py starts and checks its own outcome at a tiny size (not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

# Starts the benchmark as its own process, with its own throwaway portal.
pytestmark = pytest.mark.integration


def test_the_registration_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    output = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "bench/registrations.py", "--nodes", "30", "--runs", "1", "--sqlite",
         "--output", str(output)],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio after (steady) / before:" in result.stdout
    figures = json.loads(output.read_text())
    assert figures["nodes"] == 30 and figures["baseline_s"] > 0
    assert set(figures) >= {"before", "after, first sight", "after, steady state"}
