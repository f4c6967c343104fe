"""bench/preview.py starts and checks its own outcome at a tiny size (not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import port_open, require_service

BASE_DIR = Path(__file__).resolve().parents[2]

# Starts the benchmark as its own process, on its own throwaway PostgreSQL database.
pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_the_preview_benchmark_runs_at_a_tiny_size() -> None:
    require_service(
        "PostgreSQL", port_open("127.0.0.1", 5432), "expected on 127.0.0.1:5432 (user postgres)"
    )
    result = subprocess.run(
        [sys.executable, "bench/preview.py", "--nodes", "200", "--runs", "2"],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded 200 rows" in result.stderr
    assert "preview() at 200 nodes, 2 runs each" in result.stdout
    assert "EXPLAIN ANALYZE for the slowest filter" in result.stdout
    assert "ERROR" not in result.stdout
