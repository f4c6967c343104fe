"""The agent plugin API: a base class, the context an action receives, and ActionError."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.ddl import AgentDDL, load_ddl
from agents.protocol.envelope import Request
from agents.protocol.status import Status

BACKEND_AUTO = "auto"
BACKEND_SIMULATED = "simulated"
BACKEND_CHOICES = (BACKEND_AUTO, BACKEND_SIMULATED)


class ActionError(Exception):
    """Raised by an action to fail with a chosen status (default ABORTED) and message.

    ``data`` (optional) still goes back in the Reply, e.g. a failed check's output.
    """

    def __init__(
        self,
        message: str,
        status: Status = Status.ABORTED,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.data = dict(data or {})


@dataclass(frozen=True)
class AgentSettings:
    """The node settings agents may read; built by the daemon from its NodeConfig.

    ``backend`` is ``auto`` (act on this host through its real tools) or ``simulated``
    (in-memory, deterministic state per agent instance: never touches the host).
    """

    backend: str = BACKEND_AUTO
    nrpe_commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """True when agents must use their simulated backends."""
        return self.backend == BACKEND_SIMULATED


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
    broker: Mapping[str, Any] = field(default_factory=dict)  # the daemon's BrokerState
    request: Request | None = None


Handler = Callable[[ActionContext, dict[str, Any]], dict[str, Any]]


@functools.cache
def shipped_ddl(name: str) -> AgentDDL:
    """The agent's DDL, parsed once per process (a simulator builds thousands of agents)."""
    return load_ddl(name)


class Agent:
    """Base class for agents: the DDL is loaded from the agent's ddl.json by name.

    Subclasses set ``name`` and return their handlers from ``actions()``; each handler takes
    the context and the DDL-validated inputs and returns the outputs dict.
    """

    name: ClassVar[str] = ""

    def __init__(self, settings: AgentSettings | None = None) -> None:
        self.settings = settings or AgentSettings()
        self.ddl: AgentDDL = shipped_ddl(self.name)

    def available(self) -> tuple[bool, str]:
        """Whether this agent can run on this host, and why not (Salt's ``__virtual__``)."""
        return True, ""

    def actions(self) -> dict[str, Handler]:
        """Action name -> handler; every name must also be in the DDL."""
        raise NotImplementedError
