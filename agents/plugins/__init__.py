"""The agents a node can run, listed explicitly (no dynamic class loading)."""

from __future__ import annotations

import logging

from agents.plugins.base import (
    BACKEND_CHOICES,
    ActionContext,
    ActionError,
    Agent,
    AgentSettings,
    Handler,
)
from agents.plugins.echo.agent import EchoAgent
from agents.plugins.filemgr.agent import FilemgrAgent
from agents.plugins.nrpe.agent import NrpeAgent
from agents.plugins.package.agent import PackageAgent
from agents.plugins.process.agent import ProcessAgent
from agents.plugins.puppet.agent import PuppetAgent
from agents.plugins.rpcutil.agent import RpcutilAgent
from agents.plugins.service.agent import ServiceAgent

log = logging.getLogger(__name__)

REGISTRY: dict[str, type[Agent]] = {
    RpcutilAgent.name: RpcutilAgent,
    EchoAgent.name: EchoAgent,
    ServiceAgent.name: ServiceAgent,
    PackageAgent.name: PackageAgent,
    ProcessAgent.name: ProcessAgent,
    FilemgrAgent.name: FilemgrAgent,
    NrpeAgent.name: NrpeAgent,
    PuppetAgent.name: PuppetAgent,
}


def load_agents(
    enabled: list[str] | None = None, settings: AgentSettings | None = None
) -> dict[str, Agent]:
    """Instantiate the enabled agents (all by default) that say they are available here.

    ``settings`` picks the backends (``backend: simulated`` never touches the host); each
    call builds fresh agent objects, so simulated state is per call, i.e. per node.

    An agent that declines is logged with its reason and left out; an unknown name in
    ``enabled`` raises KeyError so a typo in the config is not silently ignored.
    """
    names = list(REGISTRY) if enabled is None else enabled
    loaded: dict[str, Agent] = {}
    for name in names:
        if name not in REGISTRY:
            raise KeyError(f"unknown agent {name!r}; known agents: {', '.join(sorted(REGISTRY))}")
        agent = REGISTRY[name](settings)
        ok, reason = agent.available()
        if not ok:
            log.info("agent %s not loaded: %s", name, reason)
            continue
        missing = set(agent.actions()) ^ set(agent.ddl.actions)
        if missing:
            raise RuntimeError(f"agent {name}: code and DDL disagree on actions {sorted(missing)}")
        loaded[name] = agent
    return loaded


__all__ = [
    "BACKEND_CHOICES",
    "REGISTRY",
    "ActionContext",
    "ActionError",
    "Agent",
    "AgentSettings",
    "Handler",
    "load_agents",
]
