"""nrpe: run one Nagios check from the node's configured command list, never anything else.

``runcommand`` is not marked ``changes_node`` in the DDL: it can run only the checks the node's
own configuration lists (``nrpe_commands``), and Nagios checks observe; a node owner who
configures a check that changes the host has made that choice on the node, not in the portal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.plugins.base import ActionContext, ActionError, Agent, AgentSettings, Handler
from agents.plugins.command import run_command
from agents.protocol.status import Status

NAGIOS_STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL"}


@dataclass(frozen=True)
class CheckResult:
    """A check's exit code and its raw first line of output."""

    exitcode: int
    text: str


class NrpeBackend:
    """Runs a named check; only names from ``commands()`` exist."""

    name = "abstract"

    def commands(self) -> list[str]:
        """The check names this node accepts, sorted."""
        raise NotImplementedError

    def run(self, command: str, timeout: float) -> CheckResult:
        """Run a known check (callers check the name first)."""
        raise NotImplementedError


class ConfiguredNrpeBackend(NrpeBackend):
    """Runs the argv configured for a name in node config ``nrpe_commands`` (no shell)."""

    name = "configured"

    def __init__(self, commands: Mapping[str, tuple[str, ...]]) -> None:
        self._commands = dict(commands)

    def commands(self) -> list[str]:
        return sorted(self._commands)

    def run(self, command: str, timeout: float) -> CheckResult:
        result = run_command(self._commands[command], timeout=timeout)
        return CheckResult(result.exitcode, result.stdout or result.stderr)


SIMULATED_CHECKS: dict[str, CheckResult] = {
    "check_load": CheckResult(0, "OK - load average: 0.15, 0.10, 0.05|load1=0.150;15;30;0"),
    "check_disk": CheckResult(0, "DISK OK - free space: / 12000 MB (60%)|/=8000MB;;;0;20000"),
    "check_users": CheckResult(0, "USERS OK - 1 users currently logged in |users=1;20;50;0"),
    "check_swap": CheckResult(1, "SWAP WARNING - 40% free (800 MB out of 2000 MB)|swap=800MB"),
}


class SimulatedNrpeBackend(NrpeBackend):
    """Canned, deterministic check results for simulator nodes: never runs a process."""

    name = "simulated"

    def commands(self) -> list[str]:
        return sorted(SIMULATED_CHECKS)

    def run(self, command: str, timeout: float) -> CheckResult:
        return SIMULATED_CHECKS[command]


def parse_output(text: str) -> tuple[str, str]:
    """Nagios plugin output -> (text, perfdata): the first line split at its first ``|``."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    output, _, perfdata = first.partition("|")
    return output.strip(), perfdata.strip()


class NrpeAgent(Agent):
    """runcommand of configured checks; a non-OK check replies ABORTED with its output."""

    name = "nrpe"

    def __init__(
        self, settings: AgentSettings | None = None, backend: NrpeBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = (
                SimulatedNrpeBackend()
                if self.settings.simulated
                else ConfiguredNrpeBackend(self.settings.nrpe_commands)
            )
        self.backend = backend

    def actions(self) -> dict[str, Handler]:
        return {"runcommand": self.runcommand}

    def runcommand(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Runs the named check; OK for exit 0, ABORTED (with the data) for 1, 2 or other.

        An unknown name is INVALID_DATA and runs nothing.
        """
        command = inputs["command"]
        known = self.backend.commands()
        if command not in known:
            raise ActionError(
                f"unknown nrpe command {command!r}; configured: {', '.join(known) or 'none'}",
                Status.INVALID_DATA,
            )
        # Leave a margin so the reply reaches the caller before its DDL timeout.
        result = self.backend.run(command, timeout=max(1.0, self.ddl.timeout - 5))
        output, perfdata = parse_output(result.text)
        data = {"output": output, "exitcode": result.exitcode, "perfdata": perfdata}
        state = NAGIOS_STATES.get(result.exitcode, "UNKNOWN")
        if result.exitcode != 0:
            raise ActionError(f"{state}: {output}"[:200], Status.ABORTED, data)
        return data
