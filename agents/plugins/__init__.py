"""The agents a node can run, listed explicitly (no dynamic class loading)."""

from __future__ import annotations

import logging

from agents.plugins.base import ActionContext, ActionError, Agent, Handler
from agents.plugins.echo.agent import EchoAgent
from agents.plugins.rpcutil.agent import RpcutilAgent

log = logging.getLogger(__name__)

REGISTRY: dict[str, type[Agent]] = {
    RpcutilAgent.name: RpcutilAgent,
    EchoAgent.name: EchoAgent,
}


def load_agents(enabled: list[str] | None = None) -> dict[str, Agent]:
    """Instantiate the enabled agents (all by default) that say they are available here.

    An agent that declines is logged with its reason and left out; an unknown name in
    ``enabled`` raises KeyError so a typo in the config is not silently ignored.
    """
    names = list(REGISTRY) if enabled is None else enabled
    loaded: dict[str, Agent] = {}
    for name in names:
        if name not in REGISTRY:
            raise KeyError(f"unknown agent {name!r}; known agents: {', '.join(sorted(REGISTRY))}")
        agent = REGISTRY[name]()
        ok, reason = agent.available()
        if not ok:
            log.info("agent %s not loaded: %s", name, reason)
            continue
        missing = set(agent.actions()) ^ set(agent.ddl.actions)
        if missing:
            raise RuntimeError(f"agent {name}: code and DDL disagree on actions {sorted(missing)}")
        loaded[name] = agent
    return loaded


__all__ = ["REGISTRY", "ActionContext", "ActionError", "Agent", "Handler", "load_agents"]
