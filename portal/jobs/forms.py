"""The job form: built from the agents' DDLs, validated by the same services as the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

INPUT_PREFIX = "input:"


@dataclass(frozen=True)
class JobFormData:
    """What the operator sent: ``agent.action``, the filter text and the action's inputs."""

    agent: str
    action: str
    filter_text: str
    inputs: dict[str, Any]

    @classmethod
    def from_post(cls, post: QueryDict) -> JobFormData:
        agent, _, action = post.get("agent_action", "").partition(".")
        inputs = {
            key[len(INPUT_PREFIX) :]: value
            for key, value in post.items()
            if key.startswith(INPUT_PREFIX) and value != ""
        }
        return cls(agent, action, post.get("filter", ""), inputs)

    @property
    def agent_action(self) -> str:
        return f"{self.agent}.{self.action}" if self.agent else ""
