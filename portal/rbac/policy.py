"""The one place that decides who may do what.

"May this operator run this action on the nodes this filter matches, and on which of them?"
is answered by ``authorize``; "who may watch or read this job", "who may approve it", "who may
read the audit history" and "who may change roles and grants" by the functions below. The job
form, the JSON API, the ``rpc`` command, the Celery task, the WebSocket consumer and the pages
all ask here, and nothing else looks at roles, guardian permissions or grants to decide.

Rules:
* ``admin`` (and Django superusers) may do everything, unscoped, without approval.
* Anyone else may run ``agent.action`` when one of their roles has a Grant on the agent and the
  guardian permission ``run_agent`` on the Agent or ``run_action`` on the Action.
* The grants that allow the action decide the scope: if one of them has none, the operator's
  filter is used as it is; otherwise the effective filter is the operator's filter AND (the
  scopes ORed). The operator's filter is re-serialised from its parsed form before it is
  combined, so nothing typed (an unbalanced parenthesis, ``or``/``not`` tricks) can reach
  outside the AND.
* Approval is needed when any grant that allows the action asks for it (always, or above its
  node count): the stricter rule wins, so a second role never removes a four-eyes check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet

from agents.filters import Filter, parse_compound
from portal.rbac.models import ADMIN_ROLE, MANAGER_ROLE, Action, Agent, Grant, RoleSettings

if TYPE_CHECKING:
    from portal.jobs.models import Job

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class Permit:
    """The answer to "may this operator run agent.action on this filter?"."""

    allowed: bool
    reason: str
    effective_filter: Filter
    scopes: tuple[str, ...] = ()  # empty: not narrowed
    grants: tuple[Grant, ...] = field(default=(), compare=False)

    @property
    def scope_text(self) -> str:
        """The scope the operator's filter was ANDed with, as one expression ("" for none)."""
        return scopes_expression(self.scopes)

    def needs_approval(self, node_count: int) -> bool:
        return any(grant.needs_approval(node_count) for grant in self.grants)

    def approval_reason(self, node_count: int) -> str:
        """Which grants ask for a second person at this node count, for the approver."""
        rules = [
            f"role {g.role.name}: "
            + ("always" if g.approval == Grant.Approval.ALWAYS else f"above {g.approval_above}")
            for g in self.grants
            if g.needs_approval(node_count)
        ]
        return f"{node_count} nodes; " + "; ".join(rules) if rules else ""


def is_active(user: User) -> bool:
    return bool(user.is_authenticated and user.is_active)


@dataclass(frozen=True)
class Standing:
    """What a user's roles make them, read in one query: admin, manager, and the rights a
    role's settings give (approve others' jobs, cancel any job, see every node)."""

    admin: bool = False
    manager: bool = False
    approver: bool = False
    cancels_any: bool = False
    sees_all_nodes: bool = False

    @property
    def reads_audit(self) -> bool:
        return self.admin or self.manager


def standing(user: User) -> Standing:
    """Admin (superuser or role ``admin``), manager, and each right an admin has or one of
    the user's roles is given. Managers see every node, as they read every job."""
    if not is_active(user):
        return Standing()
    rows = list(
        Group.objects.filter(user=user).values_list(
            "name",
            "settings__may_approve",
            "settings__may_cancel_any",
            "settings__sees_all_nodes",
        )
    )
    names = {row[0] for row in rows}
    admin = user.is_superuser or ADMIN_ROLE in names
    manager = MANAGER_ROLE in names
    return Standing(
        admin=admin,
        manager=manager,
        approver=admin or any(row[1] for row in rows),
        cancels_any=admin or any(row[2] for row in rows),
        sees_all_nodes=admin or manager or any(row[3] for row in rows),
    )


def is_admin(user: User) -> bool:
    return standing(user).admin


# Why ``may_cancel`` said no, as every path tells it.
CANCEL_REFUSED = (
    "only the job's requester, an admin or a member of a role given the right to cancel any"
    " job may stop it"
)


def may_cancel(user: User, job: Job) -> bool:
    """Who may stop a job, or withdraw one waiting for approval: its requester, an admin, or
    a member of a role given "may cancel any job". A manager reads every job but runs
    nothing, so it may not stop one unless a role gives it that right."""
    if not is_active(user):
        return False
    return job.created_by_id == user.pk or standing(user).cancels_any


def roles_of(user: User) -> list[str]:
    """The roles a request is sent with (signed, for the nodes' policy files).

    A superuser counts as ``admin`` even without the group, as the portal treats them.
    """
    if not is_active(user):
        return []
    names = set(user.groups.values_list("name", flat=True))
    if user.is_superuser:
        names.add(ADMIN_ROLE)
    return sorted(names)


# -- running actions ---------------------------------------------------------------------------


def authorize(user: User, agent: str, action: str, target: Filter) -> Permit:
    """May ``user`` run ``agent.action`` on the nodes ``target`` matches, and on which of them?"""
    if not is_active(user):
        return Permit(False, "log in to run actions", target)
    if is_admin(user):
        return Permit(True, "admin", target)
    grants = _grants_allowing(user, agent, action)
    if not grants:
        return Permit(False, f"none of your roles may run {agent} {action}", target)
    scopes: tuple[str, ...] = ()
    if all(grant.scope.strip() for grant in grants):
        scopes = tuple(dict.fromkeys(canonical_scope(grant.scope) for grant in grants))
    roles = ", ".join(sorted(grant.role.name for grant in grants))
    return Permit(True, f"granted to {roles}", apply_scopes(target, scopes), scopes, grants)


def apply_scopes(target: Filter, scopes: Iterable[str]) -> Filter:
    """``target`` AND (the scopes ORed): what a scoped grant lets the operator reach."""
    scope = scopes_expression(tuple(scopes))
    if not scope:
        return target
    typed = target.describe()  # canonical text of the parsed filter: balanced, no tricks left
    return Filter.parse(f"({typed}) and ({scope})" if typed else scope)


def scopes_expression(scopes: tuple[str, ...]) -> str:
    if len(scopes) == 1:
        return scopes[0]
    return " or ".join(f"({scope})" for scope in scopes)


def canonical_scope(expression: str) -> str:
    return parse_compound(expression).describe()


def _grants_allowing(user: User, agent: str, action: str) -> tuple[Grant, ...]:
    from guardian.models import GroupObjectPermission

    action_row = Action.objects.filter(agent__name=agent, name=action).select_related("agent")
    action_obj = action_row.first()
    if action_obj is None:
        return ()
    role_ids = list(user.groups.values_list("id", flat=True))
    if not role_ids:
        return ()
    allowed_roles = GroupObjectPermission.objects.filter(group_id__in=role_ids).filter(
        Q(
            content_type=ContentType.objects.get_for_model(Agent),
            object_pk=str(action_obj.agent_id),
            permission__codename="run_agent",
        )
        | Q(
            content_type=ContentType.objects.get_for_model(Action),
            object_pk=str(action_obj.pk),
            permission__codename="run_action",
        )
    )
    return tuple(
        Grant.objects.filter(
            agent_id=action_obj.agent_id,
            role_id__in=allowed_roles.values("group_id"),
        ).select_related("role", "agent")
    )


def runnable_actions(user: User) -> dict[str, set[str]]:
    """Every ``{agent: {actions}}`` the user may run somewhere, for the form's action list."""
    from guardian.models import GroupObjectPermission

    if not is_active(user):
        return {}
    if is_admin(user):
        catalog: dict[str, set[str]] = {}
        for agent, action in Action.objects.values_list("agent__name", "name"):
            catalog.setdefault(agent, set()).add(action)
        return catalog
    role_ids = list(user.groups.values_list("id", flat=True))
    granted = set(Grant.objects.filter(role_id__in=role_ids).values_list("role_id", "agent_id"))
    perms = GroupObjectPermission.objects.filter(
        group_id__in=role_ids, permission__codename__in=("run_agent", "run_action")
    ).values_list("group_id", "permission__codename", "object_pk")
    whole_agents = {(role, int(pk)) for role, codename, pk in perms if codename == "run_agent"}
    single_actions = {(role, int(pk)) for role, codename, pk in perms if codename == "run_action"}
    result: dict[str, set[str]] = {}
    for action_id, agent_id, agent, action in Action.objects.values_list(
        "pk", "agent_id", "agent__name", "name"
    ):
        # A permission counts only with a grant of the same role: the grant holds its scope.
        if any(
            (role, agent_id) in granted
            and ((role, agent_id) in whole_agents or (role, action_id) in single_actions)
            for role in role_ids
        ):
            result.setdefault(agent, set()).add(action)
    return result


# -- what an operator must do before a job is sent ----------------------------------------------

REASON_FOR_ROLE = "your role asks for a reason or ticket reference"
REASON_FOR_CHANGE = "this action changes the nodes: give a reason or ticket reference"


@dataclass(frozen=True)
class ConfirmationRules:
    """What the operator must give before a job is sent, and why.

    ``confirm_above``: above this many nodes the count is typed (a guard of the web page; the
    API and CLI state no count). ``reason_missing`` is the message when a reason is required
    and none was given: every path (form, API, CLI) refuses such a job with it.
    """

    changes_node: bool
    confirm_above: int
    reason_required: bool
    reason_missing: str = ""

    def must_type_count(self, node_count: int) -> bool:
        return node_count > self.confirm_above

    def typed_count_error(self, node_count: int, typed: str) -> str:
        """What is wrong with the typed count ("" when it is right or not asked for)."""
        if self.must_type_count(node_count) and typed.strip() != str(node_count):
            return f"type {node_count} to run on {node_count} node{'' if node_count == 1 else 's'}"
        return ""

    def reason_error(self, reason: str) -> str:
        """Why this (stripped) reason is not enough ("" when it is)."""
        return self.reason_missing if self.reason_required and not reason.strip() else ""


def confirmation_rules(user: User, changes_node: bool = False) -> ConfirmationRules:
    """The one decision on the typed count and the reason, for the page, the API and the CLI.

    Roles only make it stricter. The count threshold is the lowest ``confirm above`` of the
    user's roles, else ``SWITCHBOARD_CONFIRM_ABOVE``; for an action that changes nodes it is
    never above ``SWITCHBOARD_CONFIRM_RISKY_ABOVE`` (default 1). A reason is required when a
    role asks for one, and always for an action that changes nodes.
    """
    rows = list(
        RoleSettings.objects.filter(role__in=user.groups.all()).values_list(
            "confirm_above", "reason_required"
        )
    )
    role_thresholds = [above for above, _ in rows if above is not None]
    threshold = min(role_thresholds, default=settings.SWITCHBOARD_CONFIRM_ABOVE)
    if changes_node:
        threshold = min(threshold, settings.SWITCHBOARD_CONFIRM_RISKY_ABOVE)
    role_asks = any(required for _, required in rows)
    # The role's message first: it is the rule an operator of that role already knows.
    missing = REASON_FOR_ROLE if role_asks else REASON_FOR_CHANGE if changes_node else ""
    return ConfirmationRules(changes_node, threshold, bool(missing), missing)


def reason_required(user: User, changes_node: bool = False) -> bool:
    """Whether a job needs a reason or ticket: ``confirmation_rules`` decides."""
    return confirmation_rules(user, changes_node).reason_required


# -- reading jobs, approving, the audit history, administering -----------------------------------


def may_approve_jobs(user: User) -> bool:
    """Whether the user may approve jobs that need a second person (a right given per role)."""
    return standing(user).approver


def may_approve(user: User, job: Job) -> bool:
    """May approve or reject this job: an approver who is not the requester."""
    return may_approve_jobs(user) and job.created_by_id != user.pk


def visible_jobs(user: User, jobs: QuerySet[Job]) -> QuerySet[Job]:
    """The jobs the user may watch and read.

    Admins and managers see every job; others see their own, those of operators who shared a
    role with them when the job was submitted, and, for approvers, the jobs sent for approval.
    """
    if not is_active(user):
        return jobs.none()
    roles = standing(user)
    if roles.admin or roles.manager:
        return jobs
    visible = Q(created_by=user) | Q(pk__in=_shared_role_jobs(user))
    if roles.approver:
        visible |= Q(approval__isnull=False)
    return jobs.filter(visible)


def _shared_role_jobs(user: User) -> QuerySet:
    from portal.jobs.models import Job

    return Job.roles.through.objects.filter(group__in=user.groups.all()).values("job_id")


def may_read_audit(user: User) -> bool:
    """Managers and admins read the whole audit history."""
    return standing(user).reads_audit


def may_administer(user: User) -> bool:
    """Only admins change operators, roles and grants."""
    return is_admin(user)
