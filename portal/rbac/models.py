"""Roles, the agents and actions they may run, and on which nodes.

A role is a ``django.contrib.auth`` Group. What a role may run of one agent is one row, a
``Grant``: django-guardian's object permission ``run_agent`` on the Agent (a direct foreign key
permission model, so guardian's checker and shortcuts read it), carrying what a permission alone
cannot say: which of the agent's actions, where (its scope) and under which conditions
(four-eyes approval). Grants are written only by ``portal.rbac.services`` and read only through
``portal.rbac.grants.read_grants``.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models
from guardian.models import GroupObjectPermissionBase

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
        permissions = [("run_agent", "Run the agent's actions its grant lists, on its scope")]

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

    def __str__(self) -> str:
        return f"{self.agent.name}.{self.name}"


class Grant(GroupObjectPermissionBase):
    """A role's grant of one agent: what (all its actions, or ``actions``), where, and how.

    guardian names the fields of its direct foreign key models: ``group`` is the role and
    ``content_object`` the agent; ``role`` and ``agent`` read them by their names here.
    ``permission`` is always ``rbac.run_agent``.
    """

    class Approval(models.TextChoices):
        NEVER = "never", "no approval"
        ALWAYS = "always", "always needs a second person"
        ABOVE = "above", "needs a second person above a node count"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="grants")
    content_object = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    all_actions = models.BooleanField(
        default=False, help_text="Every action of the agent, including ones added later."
    )
    actions = models.ManyToManyField(
        Action, blank=True, related_name="grants", help_text="With all_actions off: these."
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

    class Meta(GroupObjectPermissionBase.Meta):
        ordering = ["group__name", "content_object__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "content_object"], name="rbac_grant_one_per_role_agent"
            )
        ]

    @property
    def role(self) -> Group:
        return self.group

    @property
    def agent(self) -> Agent:
        return self.content_object

    def action_names(self) -> list[str]:
        """The granted actions, sorted, or ``["*"]`` for all (reads prefetched ``actions``)."""
        if self.all_actions:
            return ["*"]
        return sorted(action.name for action in self.actions.all())

    def allows(self, action: str) -> bool:
        return self.all_actions or any(granted.name == action for granted in self.actions.all())

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
