"""rpcutil: discovery and introspection actions every node carries."""

from __future__ import annotations

from typing import Any

from agents.filters.terms import MISSING, lookup_fact
from agents.plugins.base import ActionContext, Agent, Handler, shipped_ddl


class RpcutilAgent(Agent):
    """ping, inventory, get_fact, get_facts, agent_inventory, collective_info, daemon_stats."""

    name = "rpcutil"

    def actions(self) -> dict[str, Handler]:
        return {
            "ping": self.ping,
            "inventory": self.inventory,
            "get_fact": self.get_fact,
            "get_facts": self.get_facts,
            "agent_inventory": self.agent_inventory,
            "collective_info": self.collective_info,
            "daemon_stats": self.daemon_stats,
        }

    def ping(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Answers with the request's msgtime so the caller can measure the round trip."""
        return {"pong": ctx.request.msgtime if ctx.request else None}

    def inventory(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The node's agents, facts, classes, collectives and daemon version."""
        return {
            "agents": sorted(ctx.agents),
            "facts": ctx.facts,
            "classes": sorted(ctx.classes),
            "collectives": list(ctx.collectives),
            "main_collective": ctx.main_collective,
            "version": ctx.version,
            "data_plugins": [],
        }

    def get_fact(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """One fact's value (dotted names reach nested facts); null when unset."""
        value = lookup_fact(ctx.facts, inputs["fact"])
        return {"fact": inputs["fact"], "value": None if value is MISSING else value}

    def get_facts(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Several facts at once, from a comma-separated list."""
        names = [n.strip() for n in inputs["facts"].split(",") if n.strip()]
        values = {}
        for name in names:
            value = lookup_fact(ctx.facts, name)
            values[name] = None if value is MISSING else value
        return {"values": values}

    def agent_inventory(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The loaded agents with their DDL metadata (name, description, version, timeout)."""
        inventory = []
        for name in sorted(ctx.agents):
            ddl = shipped_ddl(name)
            inventory.append(
                {
                    "agent": name,
                    "name": ddl.name,
                    "description": ddl.description,
                    "version": ddl.version,
                    "timeout": ddl.timeout,
                    "license": ddl.license,
                    "author": ddl.author,
                }
            )
        return {"agents": inventory}

    def collective_info(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The collectives this node serves and its main collective."""
        return {"collectives": list(ctx.collectives), "main_collective": ctx.main_collective}

    def daemon_stats(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The daemon's counters since start; every counter is present (0 if never hit)."""
        stats: dict[str, Any] = dict(ctx.stats)
        stats["starttime"] = ctx.started_at
        stats["version"] = ctx.version
        stats["broker"] = ctx.broker.get("broker", "")
        stats["broker_since"] = ctx.broker.get("since", 0)
        stats["broker_error"] = ctx.broker.get("last_error", "")
        return stats
