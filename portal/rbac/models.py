"""Roles, the agents and actions they may run, and on which nodes.

A role is a ``django.contrib.auth`` Group. What a role may run is stored twice, on purpose:
django-guardian object permissions (``run_action`` on an Action, ``run_agent`` on an Agent for
all of its actions) say *what*; a Grant row per role and agent says *where* (its scope) and
*under which conditions* (four-eyes approval). Both are written together, only by
``portal.rbac.services``, and read only by ``portal.rbac.policy``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

# The built-in roles. ``admin`` may do everything, ``manager`` reads every job and the audit
# history, ``operator`` may run nothing until granted.
ADMIN_ROLE = "admin"
MANAGER_ROLE = "manager"
OPERATOR_ROLE = "operator"
BUILTIN_ROLES = (ADMIN_ROLE, MANAGER_ROLE, OPERATOR_ROLE)


class Agent(models.Model):
    """An agent the portal knows from its DDL (synced by ``services.sync_catalog``)."""

    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        permissions = [("run_agent", "Run every action of the agent")]

    def __str__(self) -> str:
        return self.name


class Action(models.Model):
    """One action of an agent, from its DDL."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="actions")
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["agent__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="rbac_action_unique_per_agent")
        ]
        permissions = [("run_action", "Run the action")]

    def __str__(self) -> str:
        return f"{self.agent.name}.{self.name}"


class Grant(models.Model):
    """Where and how a role may run what guardian says it may run of one agent."""

    class Approval(models.TextChoices):
        NEVER = "never", "no approval"
        ALWAYS = "always", "always needs a second person"
        ABOVE = "above", "needs a second person above a node count"

    role = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="grants")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    all_actions = models.BooleanField(
        default=False, help_text="Every action of the agent, including ones added later."
    )
    scope = models.TextField(
        blank=True,
        help_text="A filter the targets must also match; empty: every node.",
    )
    approval = models.CharField(max_length=8, choices=Approval.choices, default=Approval.NEVER)
    approval_above = models.PositiveIntegerField(
        null=True, blank=True, help_text="With approval 'above': more nodes than this need it."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["role__name", "agent__name"]
        constraints = [
            models.UniqueConstraint(fields=["role", "agent"], name="rbac_grant_one_per_role_agent")
        ]

    def __str__(self) -> str:
        return f"{self.role.name}: {self.agent.name}"

    def needs_approval(self, node_count: int) -> bool:
        if self.approval == self.Approval.ALWAYS:
            return True
        if self.approval == self.Approval.ABOVE:
            return node_count > (self.approval_above or 0)
        return False


class RoleSettings(models.Model):
    """What a role's members must do on the form, and what they may do beyond running actions:
    approve others' jobs, cancel any job, see the whole inventory."""

    role = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="settings")
    confirm_above = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Above this many nodes, type the count (empty: the default).",
    )
    reason_required = models.BooleanField(
        default=False, help_text="A reason or ticket reference is required to run a job."
    )
    may_approve = models.BooleanField(
        default=False, help_text="Members may approve jobs that need a second person."
    )
    may_cancel_any = models.BooleanField(
        default=False,
        help_text="Members may cancel or withdraw any job they see, not only their own.",
    )
    sees_all_nodes = models.BooleanField(
        default=False,
        help_text="Members see the whole inventory, not only the nodes in their scopes.",
    )

    def __str__(self) -> str:
        return f"settings of {self.role.name}"


class Approval(models.Model):
    """A job waiting for a second person, and what they decided."""

    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        WITHDRAWN = "withdrawn"

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="approval")
    requested_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    reason = models.TextField(help_text="Why the job needs approval (which grant, how many nodes).")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approvals_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"])]

    def __str__(self) -> str:
        return f"approval of job {self.job_id}: {self.state}"
