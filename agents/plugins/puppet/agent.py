"""puppet: status, runonce, enable and disable of the node's Puppet agent."""

from __future__ import annotations

from typing import Any

from agents.plugins.base import ActionContext, Agent, AgentSettings, Handler
from agents.plugins.puppet.backends import (
    PuppetBackend,
    SimulatedPuppetBackend,
    detect_puppet_backend,
)


class PuppetAgent(Agent):
    """Always loads (its DDL is useful everywhere); without puppet every action ABORTs."""

    name = "puppet"

    def __init__(
        self, settings: AgentSettings | None = None, backend: PuppetBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = (
                SimulatedPuppetBackend() if self.settings.simulated else detect_puppet_backend()
            )
        self.backend = backend

    def actions(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "runonce": self.runonce,
            "enable": self.enable,
            "disable": self.disable,
        }

    def status(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Enabled, applying, disable message, last run time; changes nothing."""
        return self.backend.status()

    def runonce(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Starts one background run; ABORTED when disabled or already applying."""
        return self.backend.runonce()

    def enable(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Allows runs again."""
        return self.backend.enable()

    def disable(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Stops future runs; the message defaults to who asked, so others know whom to ask."""
        message = inputs.get("message") or ""
        if not message:
            caller = ctx.request.callerid if ctx.request else "unknown caller"
            message = f"disabled by {caller} via Switchboard"
        return self.backend.disable(message)
