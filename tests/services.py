"""Services the integration tests need: skip (or, in CI, fail) when one is missing.

Plain Python, no Django: the harness, the benchmarks and the screenshot script import it
before (or without) setting Django up.
"""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_SERVICES = os.environ.get("SWITCHBOARD_REQUIRE_SERVICES", "") not in ("", "0")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool, how: str) -> None:
    """Skip the test when ``name`` is missing, saying how to provide it.

    With ``SWITCHBOARD_REQUIRE_SERVICES=1`` (CI) a missing service fails the test instead, so
    an integration test can never pass CI by not running.
    """
    if available:
        return
    message = f"{name} is not available: {how}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (SWITCHBOARD_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(message)
