"""The one place that decides who may do what.

"May this operator run this action on the nodes this filter matches, and on which of them?"
is answered by ``authorize``; "who may watch or read this job", "who may approve it", "who may
read the audit history" and "who may change roles and grants" by the functions below. The job
form, the JSON API, the ``rpc`` command, the Celery task, the WebSocket consumer and the pages
all ask here, and nothing else looks at roles or grants to decide.

Rules:
* ``admin`` (and Django superusers) may do everything, unscoped, without approval.
* Anyone else may run ``agent.action`` when one of their roles has a Grant of the agent that
  lists the action (or all of them).
* The grants that allow the action decide the scope: if one of them has none, the operator's
  filter is used as it is; otherwise the effective filter is the operator's filter AND (the
  scopes ORed). The operator's filter is re-serialised from its parsed form before it is
  combined, so nothing typed (an unbalanced parenthesis, ``or``/``not`` tricks) can reach
  outside the AND.
* Approval is needed when any grant that allows the action asks for it (always, or above its
  node count): the stricter rule wins, so a second role never removes a four-eyes check.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, TypeVar

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as Account
from django.db.models import Q, QuerySet

from agents.filters import Filter, parse_compound
from portal.rbac.grants import read_grants
from portal.rbac.models import ADMIN_ROLE, MANAGER_ROLE, Action, Grant, RoleSettings

User = Account | AnonymousUser
# A queryset of jobs, whatever its class (rbac knows no job model; ``portal.jobs`` passes its
# JobQuerySet and gets one back).
_Jobs = TypeVar("_Jobs", bound="QuerySet[Any, Any]")


class RequestedJob(Protocol):
    """What the decisions about a job need of it: who asked for it (rbac knows no job model;
    ``portal.jobs`` builds on rbac, not the other way round)."""

    created_by_id: int


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


def is_active(user: User) -> TypeGuard[Account]:
    """An active account (an anonymous user is never authenticated)."""
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
    admin = admin_by_roles(user, names)
    manager = MANAGER_ROLE in names
    return Standing(
        admin=admin,
        manager=manager,
        approver=admin or any(row[1] for row in rows),
        cancels_any=admin or any(row[2] for row in rows),
        sees_all_nodes=admin or manager or any(row[3] for row in rows),
    )


def admin_by_roles(user: Account, role_names: Collection[str]) -> bool:
    """The one definition of an admin: a superuser, or a member of the ``admin`` role. For a
    caller that already holds the user's role names (no query); ``is_admin`` reads them."""
    return user.is_superuser or ADMIN_ROLE in role_names


def is_admin(user: User) -> bool:
    return standing(user).admin


# Why ``may_cancel`` said no, as every path tells it.
CANCEL_REFUSED = (
    "only the job's requester, an admin or a member of a role given the right to cancel any"
    " job may stop it"
)


def may_cancel(user: User, job: RequestedJob) -> bool:
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
    role_ids = list(user.groups.values_list("id", flat=True))
    if not role_ids:
        return ()
    return tuple(
        grant for grant in read_grants(role_ids=role_ids, agent=agent) if grant.allows(action)
    )


def runnable_actions(user: User) -> dict[str, set[str]]:
    """Every ``{agent: {actions}}`` the user may run somewhere, for the form's action list."""
    if not is_active(user):
        return {}
    catalog: dict[str, set[str]] = {}
    for agent, action in Action.objects.values_list("agent__name", "name"):
        catalog.setdefault(agent, set()).add(action)
    if is_admin(user):
        return catalog
    result: dict[str, set[str]] = {}
    for grant in read_grants(role_ids=user.groups.values_list("id", flat=True)):
        known = catalog.get(grant.agent.name, set())
        granted = known if grant.all_actions else known & set(grant.action_names())
        if granted:
            result.setdefault(grant.agent.name, set()).update(granted)
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


APPROVE_OWN_JOB = "you cannot approve or reject your own job"
APPROVE_NOT_GIVEN = "none of your roles may approve jobs"


@dataclass(frozen=True)
class Verdict:
    """A yes or no, with the reason for a no as every path tells it."""

    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def may_approve(user: User, job: RequestedJob) -> Verdict:
    """May approve or reject this job: an approver who is not the requester."""
    if is_active(user) and job.created_by_id == user.pk:
        return Verdict(False, APPROVE_OWN_JOB)
    if not may_approve_jobs(user):
        return Verdict(False, APPROVE_NOT_GIVEN)
    return Verdict(True)


def visible_jobs(user: User, jobs: _Jobs) -> _Jobs:
    """The jobs the user may watch and read.

    Admins and managers see every job; others see their own, those of operators who shared a
    role with them when the job was submitted, and, for approvers, the jobs sent for approval.
    """
    if not is_active(user):
        return jobs.none()
    roles = standing(user)
    if roles.admin or roles.manager:
        return jobs
    # The roles the job was submitted with, as a subquery: a join would repeat each job.
    shared_roles = jobs.model.roles.through.objects.filter(group__in=user.groups.all())
    visible = Q(created_by=user) | Q(pk__in=shared_roles.values("job_id"))
    if roles.approver:
        visible |= Q(approval__isnull=False)
    return jobs.filter(visible)


def may_read_audit(user: User) -> bool:
    """Managers and admins read the whole audit history."""
    return standing(user).reads_audit


def may_administer(user: User) -> bool:
    """Only admins change operators, roles and grants."""
    return is_admin(user)
