"""What rbac announces: every change of roles, grants and role membership, with who made it.

The audit app records each one (``portal.audit.receivers.on_access_changed``). A signal, so
that rbac, the layer every other app builds on, imports none of them; it is sent inside the
change's transaction, so a change that cannot be recorded is not made.
"""

from __future__ import annotations

from django.dispatch import Signal

# What changed: a role (created, its settings), a grant, or an operator's set of roles.
ROLE = "role"
GRANT = "grant"
OPERATOR_ROLES = "operator_roles"

# Sent with: change (one of the above), actor, request, agent, before, after.
access_changed = Signal()
