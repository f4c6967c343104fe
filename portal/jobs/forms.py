"""The job form: built from the agents' DDLs, validated by the same services as the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

OPTION_PREFIX = "option:"


def input_field_name(agent: str, action: str, name: str) -> str:
    """The form field of one action's input: scoped by action, so only the chosen one counts."""
    return f"input:{agent}.{action}:{name}"


@dataclass(frozen=True)
class JobFormData:
    """What the operator sent: ``agent.action``, the filter text and the action's inputs."""

    agent: str
    action: str
    filter_text: str
    inputs: dict[str, Any]
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def from_post(cls, post: QueryDict) -> JobFormData:
        agent, _, action = post.get("agent_action", "").partition(".")
        # Every action's fields may be posted (a browser without JavaScript sends them all):
        # only the chosen action's inputs are read; empty ones fall back to the DDL default.
        prefix = input_field_name(agent, action, "")
        inputs = {
            key[len(prefix) :]: value
            for key, value in post.items()
            if key.startswith(prefix) and value != ""
        }
        options = {
            key[len(OPTION_PREFIX) :]: value
            for key, value in post.items()
            if key.startswith(OPTION_PREFIX) and value.strip() != ""
        }
        return cls(
            agent, action, post.get("filter", ""), inputs, options, post.get("reason", "").strip()
        )

    @property
    def agent_action(self) -> str:
        return f"{self.agent}.{self.action}" if self.agent else ""
