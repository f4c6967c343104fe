"""process: list the node's processes whose command line matches a pattern."""

from __future__ import annotations

import re
from typing import Any

from agents.filters import FilterSyntaxError, compile_safe
from agents.plugins.base import ActionContext, ActionError, Agent, AgentSettings, Handler
from agents.plugins.process.backends import (
    ProcessBackend,
    SimulatedProcessBackend,
    detect_process_backend,
)
from agents.protocol.status import Status

# Replies are capped at 256 KiB on the wire; a few hundred rows fit comfortably.
MAX_PROCESSES = 500


class ProcessAgent(Agent):
    """Lists processes from /proc, or a simulated table on virtual nodes."""

    name = "process"

    def __init__(
        self, settings: AgentSettings | None = None, backend: ProcessBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = (
                SimulatedProcessBackend() if self.settings.simulated else detect_process_backend()
            )
        self.backend = backend

    def available(self) -> tuple[bool, str]:
        if self.backend is None:
            return False, "/proc is not mounted"
        return True, ""

    def actions(self) -> dict[str, Handler]:
        return {"list": self.list}

    def list(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Processes whose command matches ``pattern`` (a safe regex; empty: all), by pid.

        At most MAX_PROCESSES rows are returned; ``count`` is the full number of matches.
        No match is OK with ``count`` 0, not a failure: the action asks "which processes
        match?" across the table, not about one process that must exist.
        """
        pattern = inputs.get("pattern") or ""
        try:
            regex: re.Pattern[str] | None = compile_safe(pattern) if pattern else None
        except FilterSyntaxError as exc:
            raise ActionError(f"pattern: {exc}", Status.INVALID_DATA) from None
        assert self.backend is not None  # load_agents never keeps an unavailable agent
        matches = [p for p in self.backend.processes() if regex is None or regex.search(p.command)]
        return {
            "pslist": [p.to_dict() for p in matches[:MAX_PROCESSES]],
            "count": len(matches),
            "truncated": len(matches) > MAX_PROCESSES,
        }
