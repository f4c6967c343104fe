"""bench/audit_export.py starts and checks its own outcome at a tiny size (not a timing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import port_open, require_service

BASE_DIR = Path(__file__).resolve().parents[2]

# Starts the benchmark as its own process, on its own throwaway PostgreSQL database.
pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_the_audit_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    require_service(
        "PostgreSQL", port_open("127.0.0.1", 5432), "expected on 127.0.0.1:5432 (user postgres)"
    )
    report = tmp_path / "report.txt"
    result = subprocess.run(
        [sys.executable, "bench/audit_export.py", "--events", "500", "--runs", "1", "--prune",
         "--output", str(report)],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "audit_auditevent: 500 rows" in text
    assert "Export through the ASGI application" in text
    # The exports record themselves: more than the 500 loaded events are checked.
    assert re.search(r"check_chain \(verify_audit\): \d+ events, intact=True", text), text
    assert re.search(r"chain intact after: True \(\d+ events\)", text), text
