"""Starts a set of child processes, stops them all together, leaves none behind.

Used by ``manage.py demo`` to run the embedded profile, and by the integration tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


class ChildFailed(RuntimeError):
    """A child exited or never became ready; the message says which and shows its log tail."""


@dataclass
class Child:
    """One supervised process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Owns child processes; ``stop()`` (or leaving the ``with`` block) ends every one."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, list(argv), self.log_dir / f"{name}.log", env)
        # A fresh log per start: readiness is read from it, so old runs' lines must not count.
        log = child.log_path.open("wb")
        # Each child leads its own process group, so stopping it also stops what it spawned
        # (Celery's pool, for one), and a Ctrl-C reaches the children only through us.
        child.process = subprocess.Popen(
            child.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        self.children.append(child)
        logger.info("started %s (pid %s)", name, child.process.pid)
        return child

    def check(self) -> None:
        """Raise ``ChildFailed`` if any child has exited."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise ChildFailed(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )

    def wait_for_port(self, child: Child, host: str, port: int, timeout: float = 30.0) -> None:
        """Wait until ``host:port`` accepts connections, failing early if the child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise ChildFailed(f"{child.name} did not listen on {host}:{port} within {timeout:.0f} s")

    def wait_for_log(self, child: Child, text: str, timeout: float = 60.0) -> None:
        """Wait until ``text`` appears in the child's log, failing early if the child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if text in child.log_tail(200):
                return
            time.sleep(0.1)
        raise ChildFailed(
            f"{child.name} did not log {text!r} within {timeout:.0f} s:\n{child.log_tail()}"
        )

    def kill(self, name: str) -> None:
        """SIGKILL one child's process group at once, as a crash would (fault tests)."""
        for child in [c for c in self.children if c.name == name]:
            _signal_group(child, signal.SIGKILL)
            if child.process is not None:
                child.process.wait()
            self.children.remove(child)

    def terminate(self, name: str, grace: float = 10.0) -> None:
        """SIGTERM one child's process group and wait for it (SIGKILL after ``grace``), so it
        shuts down as in production: flushes, writes its last log line."""
        for child in [c for c in self.children if c.name == name]:
            _signal_group(child, signal.SIGTERM)
            if child.process is not None:
                try:
                    child.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    logger.warning("%s ignored SIGTERM; killing it", child.name)
                    _signal_group(child, signal.SIGKILL)
                    child.process.wait()
            self.children.remove(child)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left after ``grace``."""
        for child in reversed(self.children):
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM; killing it", child.name)
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        self.children.clear()


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.process is None:
        return
    with contextlib.suppress(ProcessLookupError):  # the group has already gone
        os.killpg(child.process.pid, sig)
