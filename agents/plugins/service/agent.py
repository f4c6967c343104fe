"""service: status, start, stop and restart of one service through the node's backend."""

from __future__ import annotations

from typing import Any

from agents.plugins.base import ActionContext, Agent, AgentSettings, Handler
from agents.plugins.service.backends import (
    ServiceBackend,
    SimulatedServiceBackend,
    detect_service_backend,
)


class ServiceAgent(Agent):
    """Manages services via systemd or SysV, or a simulated backend on virtual nodes."""

    name = "service"

    def __init__(
        self, settings: AgentSettings | None = None, backend: ServiceBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = (
                SimulatedServiceBackend() if self.settings.simulated else detect_service_backend()
            )
        self.backend = backend

    def available(self) -> tuple[bool, str]:
        if self.backend is None:
            return False, "no supported service manager (systemd is not running, no service(8))"
        return True, ""

    def actions(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "start": self.start,
            "stop": self.stop,
            "restart": self.restart,
        }

    def _backend(self) -> ServiceBackend:
        assert self.backend is not None  # load_agents never keeps an unavailable agent
        return self.backend

    def status(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The service's status: running, stopped or unknown; changes nothing.

        ABORTED when there is no such service on the node.
        """
        return {"status": self._backend().status(inputs["service"])}

    def start(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Starts the service and reports its status afterwards (ABORTED if it failed)."""
        return {"status": self._backend().change(inputs["service"], "start")}

    def stop(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Stops the service and reports its status afterwards (ABORTED if it failed)."""
        return {"status": self._backend().change(inputs["service"], "stop")}

    def restart(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Restarts the service and reports its status afterwards (ABORTED if it failed)."""
        return {"status": self._backend().change(inputs["service"], "restart")}
