"""The one reader of grants: the policy, the form's action menu, the node-policy export, the
inventory's visibility, the admin pages and the audit record of a change all read them here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db.models import QuerySet

from portal.rbac.models import Grant


def read_grants(
    *,
    role_ids: Iterable[int] | QuerySet[Group, Any] | None = None,
    agent: str | None = None,
    with_actions: bool = True,
) -> QuerySet[Grant]:
    """Grants with their role and agent loaded in one query, and their action lists in a
    second (``with_actions=False`` leaves it out for a reader of scopes only).

    ``role_ids`` keeps those of these roles (None: every role; a queryset of the roles' ids is
    used as a subquery), ``agent`` those of one agent.
    """
    grants = Grant.objects.select_related("group", "content_object")
    if with_actions:
        grants = grants.prefetch_related("actions")
    if role_ids is not None:
        grants = grants.filter(group_id__in=role_ids)
    if agent is not None:
        grants = grants.filter(content_object__name=agent)
    return grants
