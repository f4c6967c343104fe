"""package: status, install, update and uninstall of one package through the node's backend."""

from __future__ import annotations

from typing import Any

from agents.plugins.base import ActionContext, Agent, AgentSettings, Handler
from agents.plugins.package.backends import (
    PackageBackend,
    SimulatedPackageBackend,
    detect_package_backend,
)


class PackageAgent(Agent):
    """Manages packages via apt/dpkg or dnf/rpm, or a simulated backend on virtual nodes."""

    name = "package"

    def __init__(
        self, settings: AgentSettings | None = None, backend: PackageBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = (
                SimulatedPackageBackend() if self.settings.simulated else detect_package_backend()
            )
        self.backend = backend

    def available(self) -> tuple[bool, str]:
        if self.backend is None:
            return False, "no supported package manager (neither apt/dpkg nor dnf/rpm found)"
        return True, ""

    def actions(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "install": self.install,
            "update": self.update,
            "uninstall": self.uninstall,
        }

    def _backend(self) -> PackageBackend:
        assert self.backend is not None  # load_agents never keeps an unavailable agent
        return self.backend

    def status(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The installed version or "absent"; changes nothing. ABORTED for an unknown name."""
        return {"ensure": self._backend().status(inputs["package"])}

    def install(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Installs the package if absent; reports the version afterwards."""
        return {"ensure": self._backend().install(inputs["package"])}

    def update(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Upgrades (or installs) to the newest available version; reports it."""
        return {"ensure": self._backend().update(inputs["package"])}

    def uninstall(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Removes the package; reports "absent" afterwards."""
        return {"ensure": self._backend().uninstall(inputs["package"])}
