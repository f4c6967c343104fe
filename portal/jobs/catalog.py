"""The agents and actions the portal knows, from the DDLs shipped with ``agents/``, and the
errors a job request is refused with."""

from __future__ import annotations

import functools

from agents.ddl import ActionDDL, AgentDDL, UnknownAction, load_all


class JobRequestError(Exception):
    """A request that cannot become a job; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class JobForbidden(JobRequestError):
    """A well-formed request the operator's roles do not allow (HTTP 403, not 400)."""


@functools.cache
def available_agents() -> dict[str, AgentDDL]:
    """The agents the portal knows, by name, from the DDLs shipped with ``agents/``.

    Read once per process: the DDLs ship with the code and change only with a deploy.
    """
    return load_all()


def resolve_action(agent: str, action: str) -> ActionDDL:
    """The DDL of ``agent.action``; raises ``JobRequestError`` naming what is unknown."""
    try:
        agent_ddl = available_agents()[agent]
    except KeyError:
        known = ", ".join(sorted(available_agents()))
        raise JobRequestError({"agent": f"unknown agent {agent!r}; known: {known}"}) from None
    try:
        return agent_ddl.action(action)
    except UnknownAction:
        known = ", ".join(sorted(agent_ddl.actions))
        raise JobRequestError(
            {"action": f"agent {agent!r} has no action {action!r}; it has: {known}"}
        ) from None
