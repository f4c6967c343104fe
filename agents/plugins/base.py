"""The agent plugin API: a base class, the context an action receives, and ActionError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.ddl import AgentDDL, load_ddl
from agents.protocol.envelope import Request
from agents.protocol.status import Status


class ActionError(Exception):
    """Raised by an action to fail with a chosen status (default ABORTED) and message."""

    def __init__(self, message: str, status: Status = Status.ABORTED) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may know about the node and the request; nothing is global."""

    identity: str
    facts: dict[str, Any]
    classes: list[str]
    agents: list[str]
    collectives: list[str]
    main_collective: str
    version: str
    started_at: float
    stats: Mapping[str, int | float] = field(default_factory=dict)
    request: Request | None = None


Handler = Callable[[ActionContext, dict[str, Any]], dict[str, Any]]


class Agent:
    """Base class for agents: the DDL is loaded from the agent's ddl.json by name.

    Subclasses set ``name`` and return their handlers from ``actions()``; each handler takes
    the context and the DDL-validated inputs and returns the outputs dict.
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.ddl: AgentDDL = load_ddl(self.name)

    def available(self) -> tuple[bool, str]:
        """Whether this agent can run on this host, and why not (Salt's ``__virtual__``)."""
        return True, ""

    def actions(self) -> dict[str, Handler]:
        """Action name -> handler; every name must also be in the DDL."""
        raise NotImplementedError
