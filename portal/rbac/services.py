"""Every change to roles, grants and role membership goes through these functions.

Each writes in one transaction and records the change (who, when, before and after) in the
audit history. The admin pages,
the demo seeding and the tests call them; ``portal.rbac.policy`` reads what they wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.http import HttpRequest

from agents.ddl import load_all
from agents.filters import FilterSyntaxError, parse_compound
from portal.rbac import signals
from portal.rbac.grants import read_grants
from portal.rbac.models import ADMIN_ROLE, BUILTIN_ROLES, Action, Agent, Grant, RoleSettings

logger = logging.getLogger(__name__)


# Why an admin may not drop their own admin role: the next page they open would refuse them,
# and a site whose only admin did that has nobody left to give it back.
SELF_DEMOTION = (
    "you cannot take the admin role from yourself: you would lose the Access pages at once;"
    " ask another admin"
)


class GrantError(Exception):
    """A grant or role change that cannot be made; ``errors`` maps each field to the problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def sync_catalog() -> None:
    """Agent and Action rows for every agent and action the DDLs describe.

    Runs after every migrate. Actions that left a DDL are deleted (and so leave the grants
    that listed them); a grant of all actions covers new ones at once.
    """
    with transaction.atomic():
        for ddl in load_all().values():
            agent, _ = Agent.objects.update_or_create(
                name=ddl.name, defaults={"description": ddl.description}
            )
            for action in ddl.actions.values():
                Action.objects.update_or_create(
                    agent=agent, name=action.name, defaults={"description": action.description}
                )
            agent.actions.exclude(name__in=list(ddl.actions)).delete()


def ensure_builtin_roles() -> None:
    for name in BUILTIN_ROLES:
        Group.objects.get_or_create(name=name)


@dataclass(frozen=True)
class GrantSpec:
    """What an admin asks for: a role may run these actions (None: all) of an agent, where."""

    role: str
    agent: str
    actions: tuple[str, ...] | None = None
    scope: str = ""
    approval: str = Grant.Approval.NEVER
    approval_above: int | None = None


def grant_state(grant: Grant | None) -> dict[str, Any] | None:
    """A grant as the audit history shows it, before or after a change."""
    if grant is None:
        return None
    return {
        "role": grant.role.name,
        "agent": grant.agent.name,
        "actions": "*" if grant.all_actions else grant.action_names(),
        "scope": grant.scope,
        "approval": str(grant.approval),
        "approval_above": grant.approval_above,
    }


def _locked_grant(role: Group, agent: Agent) -> Grant | None:
    """The grant row locked for this transaction, read through the one reader."""
    return read_grants(role_ids=[role.pk], agent=agent.name).select_for_update(of=("self",)).first()


def set_grant(spec: GrantSpec, *, actor: User | None, request: HttpRequest | None = None) -> Grant:
    """Create or replace the grant of ``spec.agent`` to ``spec.role``; ``GrantError`` if invalid."""
    role, agent, actions = _validate(spec)
    with transaction.atomic():
        grant = _locked_grant(role, agent)
        before = grant_state(grant)
        if grant is None:
            grant = Grant(group=role, content_object=agent, permission=_run_agent_permission())
        grant.all_actions = actions is None
        grant.scope = spec.scope.strip()
        grant.approval = spec.approval
        grant.approval_above = (
            spec.approval_above if spec.approval == Grant.Approval.ABOVE else None
        )
        grant.save()
        grant.actions.set(actions or ())
        after = grant_state(grant)
        _record(signals.GRANT, actor, request, agent.name, before, after)
    logger.info("grant %s changed by %s: %s -> %s", grant, actor, before, after)
    return grant


def revoke_grant(
    role: str, agent: str, *, actor: User | None, request: HttpRequest | None = None
) -> bool:
    """Take the agent away from the role; False if it had no grant."""
    with transaction.atomic():
        group = Group.objects.filter(name=role).first()
        agent_row = Agent.objects.filter(name=agent).first()
        grant = _locked_grant(group, agent_row) if group and agent_row else None
        if grant is None:
            return False
        before = grant_state(grant)
        grant.delete()
        _record(signals.GRANT, actor, request, agent, before, None)
    logger.info("grant of %s to %s revoked by %s", agent, role, actor)
    return True


def _validate(spec: GrantSpec) -> tuple[Group, Agent, list[Action] | None]:
    errors: dict[str, str] = {}
    role = Group.objects.filter(name=spec.role).first()
    if role is None:
        errors["role"] = f"no role named {spec.role!r}"
    agent = Agent.objects.filter(name=spec.agent).first()
    if agent is None:
        errors["agent"] = f"unknown agent {spec.agent!r}"
    actions: list[Action] | None = None
    if agent is not None and spec.actions is not None:
        if not spec.actions:
            errors["actions"] = "choose at least one action, or all of them"
        known = {action.name: action for action in agent.actions.all()}
        unknown = sorted(set(spec.actions) - set(known))
        if unknown:
            errors["actions"] = f"agent {agent.name} has no action {', '.join(unknown)}"
        actions = [known[name] for name in spec.actions if name in known]
    if spec.scope.strip():
        try:
            parse_compound(spec.scope)
        except FilterSyntaxError as exc:
            errors["scope"] = str(exc)
    if spec.approval not in Grant.Approval.values:
        errors["approval"] = f"approval must be one of {', '.join(Grant.Approval.values)}"
    elif spec.approval == Grant.Approval.ABOVE and spec.approval_above is None:
        errors["approval_above"] = "give the node count above which approval is needed"
    if errors:
        raise GrantError(errors)
    assert role is not None and agent is not None
    return role, agent, actions


def _run_agent_permission() -> Permission:
    return Permission.objects.get(content_type__app_label="rbac", codename="run_agent")


def create_role(name: str, *, actor: User | None, request: HttpRequest | None = None) -> Group:
    name = name.strip()
    if not name or len(name) > 150 or any(ch.isspace() for ch in name):
        raise GrantError({"name": "a role name is 1 to 150 characters without spaces"})
    with transaction.atomic():
        role, created = Group.objects.get_or_create(name=name)
        if not created:
            raise GrantError({"name": f"a role named {name!r} exists"})
        _record(signals.ROLE, actor, request, "", None, {"role": name})
    return role


def role_settings_state(settings: RoleSettings) -> dict[str, Any]:
    return {
        "role": settings.role.name,
        "confirm_above": settings.confirm_above,
        "reason_required": settings.reason_required,
        "may_approve": settings.may_approve,
        "may_cancel_any": settings.may_cancel_any,
        "sees_all_nodes": settings.sees_all_nodes,
    }


def update_role_settings(
    role: str,
    *,
    confirm_above: int | None,
    reason_required: bool,
    may_approve: bool,
    may_cancel_any: bool = False,
    sees_all_nodes: bool = False,
    actor: User | None,
    request: HttpRequest | None = None,
) -> RoleSettings:
    group = Group.objects.filter(name=role).first()
    if group is None:
        raise GrantError({"role": f"no role named {role!r}"})
    with transaction.atomic():
        settings, _ = RoleSettings.objects.select_for_update().get_or_create(role=group)
        before = role_settings_state(settings)
        settings.confirm_above = confirm_above
        settings.reason_required = reason_required
        settings.may_approve = may_approve
        settings.may_cancel_any = may_cancel_any
        settings.sees_all_nodes = sees_all_nodes
        settings.save()
        _record(signals.ROLE, actor, request, "", before, role_settings_state(settings))
    return settings


def set_operator_roles(
    operator: User,
    roles: Iterable[str],
    *,
    actor: User | None,
    request: HttpRequest | None = None,
) -> None:
    """Make ``roles`` exactly the operator's roles; ``GrantError`` naming unknown ones, or
    when an admin (by role, not a superuser) would take the admin role from themselves."""
    names = sorted(set(roles))
    groups = list(Group.objects.filter(name__in=names))
    unknown = sorted(set(names) - {group.name for group in groups})
    if unknown:
        raise GrantError({"roles": f"no role named {', '.join(unknown)}"})
    with transaction.atomic():
        before = sorted(operator.groups.values_list("name", flat=True))
        if before == names:
            return
        if (
            actor is not None
            and actor.pk == operator.pk
            and not actor.is_superuser
            and ADMIN_ROLE in before
            and ADMIN_ROLE not in names
        ):
            raise GrantError({"roles": SELF_DEMOTION})
        operator.groups.set(groups)
        _record(
            signals.OPERATOR_ROLES,
            actor,
            request,
            "",
            {"operator": operator.get_username(), "roles": before},
            {"operator": operator.get_username(), "roles": names},
        )
    logger.info("roles of %s changed by %s: %s -> %s", operator, actor, before, names)


def _record(
    change: str,
    actor: User | None,
    request: HttpRequest | None,
    agent: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    signals.access_changed.send(
        sender=change,
        change=change,
        actor=actor,
        request=request,
        agent=agent,
        before=before,
        after=after,
    )


DEMO_NOC_ROLE = "acme-noc"
DEMO_SCOPE = "customer=acme"


def seed_demo_roles() -> Group:
    """The demo's limited role: ``rpcutil`` and ``service`` status/restart on customer=acme.

    Managers may approve jobs in the demo, so the four-eyes flow can be tried with two logins.
    """
    sync_catalog()
    ensure_builtin_roles()
    role, _ = Group.objects.get_or_create(name=DEMO_NOC_ROLE)
    set_grant(GrantSpec(DEMO_NOC_ROLE, "rpcutil", None, DEMO_SCOPE), actor=None)
    set_grant(GrantSpec(DEMO_NOC_ROLE, "service", ("status", "restart"), DEMO_SCOPE), actor=None)
    manager = Group.objects.get(name="manager")
    RoleSettings.objects.update_or_create(role=manager, defaults={"may_approve": True})
    return role
