"""The local services a run needs (ports, PostgreSQL, Redis): is one there, and a free port.

Plain Python, no Django: the stacks, the benchmarks and the screenshot script import it before
(or without) setting Django up. ``require_service`` is for tests: it skips (or, in CI, fails)
the test when a service is missing, and imports pytest only then. Throwaway PostgreSQL
databases: ``harness.databases``.
"""

from __future__ import annotations

import os
import socket
from contextlib import closing

REQUIRE_SERVICES = os.environ.get("SWITCHBOARD_REQUIRE_SERVICES", "") not in ("", "0")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_service(name: str, available: bool, how: str) -> None:
    """Skip the test when ``name`` is missing, saying how to provide it.

    With ``SWITCHBOARD_REQUIRE_SERVICES=1`` (CI) a missing service fails the test instead, so
    an integration test can never pass CI by not running.
    """
    if available:
        return
    import pytest  # only a test calls this

    message = f"{name} is not available: {how}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (SWITCHBOARD_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(message)
