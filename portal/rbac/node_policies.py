"""The grants as node policy files, so nodes refuse what the portal would refuse.

``python manage.py export_node_policies DIR`` writes one ``<agent>.policy`` per agent in the
format of ``agents.policy`` (MCollective's actionpolicy, tab-separated): default deny, ``admin``
may run everything, and one ``allow`` line per grant with the role, its actions and its scope.
Signed requests carry the caller's roles, so a node checks them without asking the portal.
Deploy the directory to every node's ``policy_dir`` (configuration management does that).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from agents.filters import parse_compound
from agents.policy import parse_policy
from portal.rbac.grants import read_grants
from portal.rbac.models import ADMIN_ROLE, Agent, Grant

# What the node's policy parser accepts as a caller token value: no spaces, no '='.
_ROLE_NAME = re.compile(r"[^\s=]+")


@dataclass(frozen=True)
class ExportedPolicies:
    files: dict[str, str]  # agent name -> file text
    skipped: list[str]  # why a grant could not be written


def render_node_policies() -> ExportedPolicies:
    """Every agent's policy file text, checked with the nodes' own parser."""
    stamp = timezone.now().isoformat(timespec="seconds")
    files: dict[str, str] = {}
    skipped: list[str] = []
    grants_by_agent: dict[int, list[Grant]] = {}
    for grant in read_grants():
        grants_by_agent.setdefault(grant.content_object_id, []).append(grant)
    for agent in Agent.objects.prefetch_related("actions"):
        lines = [
            f"# {agent.name}: written by `manage.py export_node_policies` at {stamp}.",
            "# Do not edit on the node: change the grants in the portal and export again.",
            "policy default deny",
            f"allow\trole={ADMIN_ROLE}\t*\t*\t*",
        ]
        for grant in grants_by_agent.get(agent.pk, []):
            if not _ROLE_NAME.fullmatch(grant.role.name):
                skipped.append(
                    f"role {grant.role.name!r}: a name with spaces or '=' cannot be used"
                )
                continue
            actions = " ".join(grant.action_names())
            if not actions:
                continue
            scope = parse_compound(grant.scope).describe() if grant.scope.strip() else "*"
            lines.append(f"allow\trole={grant.role.name}\t{actions}\t{scope}\t*")
        text = "\n".join(lines) + "\n"
        parse_policy(text, f"{agent.name}.policy", [a.name for a in agent.actions.all()])
        files[agent.name] = text
    return ExportedPolicies(files, skipped)


def write_node_policies(directory: Path) -> ExportedPolicies:
    """Write the files into ``directory`` (created if needed), each replaced atomically."""
    exported = render_node_policies()
    directory.mkdir(parents=True, exist_ok=True)
    for agent, text in exported.files.items():
        # A node re-reads a file when it changes: it must never see half of one.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{agent}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / f"{agent}.policy")
    return exported
