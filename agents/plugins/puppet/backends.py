"""Puppet backends: the puppet CLI, a stand-in where puppet is missing, and a simulated one."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import yaml

from agents.plugins.base import ActionError
from agents.plugins.command import run_command, which

NOT_INSTALLED = "puppet is not installed on this node"
COMMAND_TIMEOUT = 60.0
PUPPET_PATHS = ("/opt/puppetlabs/bin/puppet",)


class PuppetBackend:
    """Inspects and drives the Puppet agent; every method returns the status afterwards.

    A status is ``{"enabled", "applying", "disable_message", "lastrun", "status"}`` where
    status is one of disabled, applying, idling.
    """

    name = "abstract"

    def status(self) -> dict[str, Any]:
        """The agent's current state; changes nothing."""
        raise NotImplementedError

    def runonce(self) -> dict[str, Any]:
        """Start one background run; ABORTED if disabled or a run is in progress."""
        raise NotImplementedError

    def enable(self) -> dict[str, Any]:
        """Allow runs again (enabling an enabled agent is fine)."""
        raise NotImplementedError

    def disable(self, message: str) -> dict[str, Any]:
        """Stop future runs, recording ``message``; ABORTED if already disabled."""
        raise NotImplementedError


def summarise(enabled: bool, applying: bool, message: str, lastrun: float | None) -> dict[str, Any]:
    """The status dict every backend returns."""
    state = "applying" if applying else "idling" if enabled else "disabled"
    return {
        "enabled": enabled,
        "applying": applying,
        "disable_message": message,
        "lastrun": lastrun,
        "status": state,
    }


class MissingPuppetBackend(PuppetBackend):
    """Where puppet is not installed: the agent loads (for its DDL) but every action aborts."""

    name = "missing"

    def status(self) -> dict[str, Any]:
        raise ActionError(NOT_INSTALLED)

    def runonce(self) -> dict[str, Any]:
        raise ActionError(NOT_INSTALLED)

    def enable(self) -> dict[str, Any]:
        raise ActionError(NOT_INSTALLED)

    def disable(self, message: str) -> dict[str, Any]:
        raise ActionError(NOT_INSTALLED)


class PuppetCliBackend(PuppetBackend):
    """``puppet agent`` for changes; its lock and last-run files for status."""

    name = "puppet"

    def __init__(self, puppet: str) -> None:
        self.puppet = puppet

    def _paths(self) -> dict[str, str]:
        keys = ["agent_disabled_lockfile", "agent_catalog_run_lockfile", "lastrunfile"]
        result = run_command(
            [self.puppet, "config", "print", "--section", "agent", *keys], timeout=COMMAND_TIMEOUT
        )
        if result.exitcode != 0:
            raise ActionError(f"puppet config print failed: {result.stderr.strip()}")
        paths = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                paths[key.strip()] = value.strip()
        return paths

    def status(self) -> dict[str, Any]:
        paths = self._paths()
        disabled = paths.get("agent_disabled_lockfile", "")
        message = ""
        if disabled and os.path.exists(disabled):
            try:
                with open(disabled, encoding="utf-8") as fh:
                    message = str(json.load(fh).get("disabled_message", ""))
            except (OSError, ValueError, AttributeError):
                message = "disabled (lock file unreadable)"
        lastrun = None
        try:
            with open(paths.get("lastrunfile", ""), encoding="utf-8") as fh:
                # A local root-owned file written by puppet, never wire data.
                summary = yaml.safe_load(fh) or {}
            lastrun = float(summary.get("time", {}).get("last_run"))
        except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
            pass
        applying = os.path.exists(paths.get("agent_catalog_run_lockfile", "") or "/nonexistent")
        enabled = not (disabled and os.path.exists(disabled))
        return summarise(enabled, applying, message, lastrun)

    def _agent(self, *args: str) -> None:
        result = run_command([self.puppet, "agent", *args], timeout=COMMAND_TIMEOUT)
        if result.exitcode != 0:
            raise ActionError(f"puppet agent {args[0]} failed: {result.stderr.strip()[:200]}")

    def runonce(self) -> dict[str, Any]:
        current = self.status()
        if not current["enabled"]:
            raise ActionError(f"puppet is disabled: {current['disable_message']}")
        if current["applying"]:
            raise ActionError("a puppet run is already in progress")
        # --daemonize returns at once; the run goes on in the background as MCollective's did.
        self._agent("--onetime", "--daemonize", "--no-usecacheonfailure", "--no-splay")
        return self.status()

    def enable(self) -> dict[str, Any]:
        self._agent("--enable")
        return self.status()

    def disable(self, message: str) -> dict[str, Any]:
        current = self.status()
        if not current["enabled"]:
            raise ActionError(f"puppet is already disabled: {current['disable_message']}")
        self._agent("--disable", message)
        return self.status()


class SimulatedPuppetBackend(PuppetBackend):
    """In-memory Puppet state for simulator nodes: runs finish instantly, nothing runs.

    Deterministic apart from ``lastrun``, which is the ``clock`` time of the last runonce.
    """

    name = "simulated"

    def __init__(self, clock: Any = time.time) -> None:
        self._enabled = True
        self._message = ""
        self._lastrun: float | None = None
        self._clock = clock
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return summarise(self._enabled, False, self._message, self._lastrun)

    def runonce(self) -> dict[str, Any]:
        with self._lock:
            if not self._enabled:
                raise ActionError(f"puppet is disabled: {self._message}")
            self._lastrun = float(self._clock())
        return self.status()

    def enable(self) -> dict[str, Any]:
        with self._lock:
            self._enabled, self._message = True, ""
        return self.status()

    def disable(self, message: str) -> dict[str, Any]:
        with self._lock:
            if not self._enabled:
                raise ActionError(f"puppet is already disabled: {self._message}")
            self._enabled, self._message = False, message
        return self.status()


def detect_puppet_backend() -> PuppetBackend:
    """The puppet CLI where installed, else the stand-in that aborts every action."""
    puppet = which("puppet") or next((p for p in PUPPET_PATHS if os.path.isfile(p)), None)
    return PuppetCliBackend(puppet) if puppet else MissingPuppetBackend()
