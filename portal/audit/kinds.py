"""The kinds of audit event, ``<app>.<event>``; docs/audit.md says what each one's data holds."""

from __future__ import annotations

import re

JOB_SUBMITTED = "job.submitted"
JOB_FINISHED = "job.finished"
JOB_REFUSED = "job.refused"
JOB_CANCEL_REQUESTED = "job.cancel_requested"
JOB_WITHDRAWN = "job.withdrawn"
ACCESS_DENIED = "access.denied"
LOGIN = "login"
LOGOUT = "logout"
LOGIN_FAILED = "login.failed"
ROLE_CHANGED = "role.changed"
GRANT_CHANGED = "grant.changed"
OPERATOR_ROLES_CHANGED = "operator.roles_changed"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_APPROVED = "approval.approved"
APPROVAL_REJECTED = "approval.rejected"
APPROVAL_EXPIRED = "approval.expired"
NODE_PENDING = "node.pending"
NODE_ACCEPTED = "node.accepted"
NODE_REJECTED = "node.rejected"
NODE_REVOKED = "node.revoked"
NODE_REKEYED = "node.rekeyed"
NODE_FORGOTTEN = "node.forgotten"
NODE_KEY_CONFLICT = "node.key_conflict"
NODE_REGISTRATIONS_REFUSED = "node.registrations_refused"
AUDIT_EXPORTED = "audit.exported"
AUDIT_PRUNED = "audit.pruned"

# What the timeline offers in its kind menu, with a label each.
KNOWN_KINDS: dict[str, str] = {
    JOB_SUBMITTED: "job submitted",
    JOB_FINISHED: "job finished",
    JOB_REFUSED: "job refused",
    JOB_CANCEL_REQUESTED: "job cancel requested",
    JOB_WITHDRAWN: "job withdrawn before approval",
    APPROVAL_REQUESTED: "approval requested",
    APPROVAL_APPROVED: "approval approved",
    APPROVAL_REJECTED: "approval rejected",
    APPROVAL_EXPIRED: "approval expired",
    LOGIN: "login",
    LOGOUT: "logout",
    LOGIN_FAILED: "failed login",
    ACCESS_DENIED: "access denied",
    ROLE_CHANGED: "role changed",
    GRANT_CHANGED: "grant changed",
    OPERATOR_ROLES_CHANGED: "operator's roles changed",
    NODE_PENDING: "node pending enrolment",
    NODE_ACCEPTED: "node accepted",
    NODE_REJECTED: "node rejected",
    NODE_REVOKED: "node revoked",
    NODE_REKEYED: "node re-keyed",
    NODE_FORGOTTEN: "node forgotten",
    NODE_KEY_CONFLICT: "node key conflict",
    NODE_REGISTRATIONS_REFUSED: "registrations refused",
    AUDIT_EXPORTED: "audit exported",
    AUDIT_PRUNED: "audit pruned",
}

# A kind is lower-case words joined by dots: "login", "job.finished", "approval.expired".
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def kinds_in_group(prefix: str) -> list[str]:
    """The known kinds starting with ``prefix.`` (``job`` -> job.submitted, job.finished)."""
    return [kind for kind in KNOWN_KINDS if kind.startswith(prefix + ".") or kind == prefix]


def kind_groups() -> list[str]:
    """The first words of the known kinds that have more than one kind."""
    firsts = [kind.split(".", 1)[0] for kind in KNOWN_KINDS]
    return sorted({first for first in firsts if firsts.count(first) > 1})
