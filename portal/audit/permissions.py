"""Who may read the audit history, and which roles an event records for its actor.

Both are decided by ``portal.rbac.policy`` (the one place that decides who may do what); this
module is the audit app's door to it.
"""

from __future__ import annotations

from portal.rbac import policy
from portal.rbac.policy import User


def can_read_audit(user: User) -> bool:
    """Admins and managers read the whole audit history."""
    if not (user.is_authenticated and user.is_active):
        return False
    # Asked by the view, its queryset and the page: one answer per request's user object.
    cached = getattr(user, "_can_read_audit", None)
    if cached is None:
        cached = policy.may_read_audit(user)
        # A memo on the user object Django gives this request (it lives as long as the request).
        user._can_read_audit = cached  # type: ignore[attr-defined]
    return cached


def actor_roles(user: User | None) -> list[str]:
    """The roles recorded with an event when the caller gives none (``admin`` for a superuser,
    as the portal treats them)."""
    if user is None:
        return []
    return policy.roles_of(user)
