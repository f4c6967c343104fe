"""Who may do what with saved filters: the one place these rules live.

Reading goes through ``SavedFilter.objects.visible_to(user)`` (the owner's own, and those
shared with one of their roles); this policy answers the rest.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from portal.rbac.policy import admin_by_roles
from portal.targeting.models import SavedFilter


class SavedFilterPolicy:
    """Sharing and deleting saved filters."""

    @staticmethod
    def shareable_roles(user: User) -> list[Group]:
        """The roles ``user`` may share a filter with: their own, or any for an admin (as the
        policy defines one: a superuser or a member of the ``admin`` role)."""
        own = list(user.groups.order_by("name"))
        if admin_by_roles(user, {group.name for group in own}):
            return list(Group.objects.order_by("name"))
        return own

    @staticmethod
    def may_delete(user: User, saved: SavedFilter) -> bool:
        """Only the owner deletes a filter, even one shared with their role."""
        return saved.owner_id == user.pk
