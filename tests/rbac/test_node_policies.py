"""export_node_policies: the node refuses what the portal's grants would refuse."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command

from agents.policy import NodePolicy

pytestmark = pytest.mark.django_db


@dataclass
class _Node:
    customer: str
    classes: list[str] = field(default_factory=lambda: ["web"])
    agents: list[str] = field(default_factory=lambda: ["service", "rpcutil"])

    @property
    def identity(self) -> str:
        return f"{self.customer}-web"

    @property
    def facts(self) -> dict[str, str]:
        return {"customer": self.customer}


def test_exported_policies_allow_exactly_the_grants(acme_operator, tmp_path: Path, capsys) -> None:
    call_command("export_node_policies", str(tmp_path))
    assert "policy files to" in capsys.readouterr().out
    text = (tmp_path / "service.policy").read_text()
    assert "allow\trole=acme-noc\trestart status\tcustomer==acme\t*" in text
    policy = NodePolicy(tmp_path, default_allow=True)
    caller, roles = "user=acmeop", ["acme-noc", "operator"]

    def allowed(action: str, customer: str, who: list[str] = roles, agent: str = "service") -> bool:
        return policy.decide(agent, action, caller, _Node(customer), who).allowed

    assert allowed("restart", "acme")
    assert not allowed("restart", "globex")  # outside the scope
    assert not allowed("stop", "acme")  # an action not granted
    assert not allowed("restart", "acme", ["operator"])  # the role was taken away
    assert not allowed("install", "acme", agent="package")  # no grant on the agent at all
    assert allowed("install", "globex", ["admin"], agent="package")
