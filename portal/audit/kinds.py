"""The kinds of audit event, ``<app>.<event>``; docs/audit.md says what each one's data holds."""

from __future__ import annotations

import re

from django.db import models


class Kind(models.TextChoices):
    """Every kind the portal records, with the label the timeline's kind menu shows."""

    JOB_SUBMITTED = "job.submitted", "job submitted"
    JOB_FINISHED = "job.finished", "job finished"
    JOB_REFUSED = "job.refused", "job refused"
    JOB_CANCEL_REQUESTED = "job.cancel_requested", "job cancel requested"
    JOB_WITHDRAWN = "job.withdrawn", "job withdrawn before approval"
    APPROVAL_REQUESTED = "approval.requested", "approval requested"
    APPROVAL_APPROVED = "approval.approved", "approval approved"
    APPROVAL_REJECTED = "approval.rejected", "approval rejected"
    APPROVAL_EXPIRED = "approval.expired", "approval expired"
    LOGIN = "login", "login"
    LOGOUT = "logout", "logout"
    LOGIN_FAILED = "login.failed", "failed login"
    ACCESS_DENIED = "access.denied", "access denied"
    ROLE_CHANGED = "role.changed", "role changed"
    GRANT_CHANGED = "grant.changed", "grant changed"
    OPERATOR_ROLES_CHANGED = "operator.roles_changed", "operator's roles changed"
    USER_CREATED = "user.created", "account created"
    USER_CHANGED = "user.changed", "account changed"
    USER_DEACTIVATED = "user.deactivated", "account deactivated"
    USER_REACTIVATED = "user.reactivated", "account reactivated"
    USER_PASSWORD_RESET = "user.password_reset", "password reset"
    TOKEN_CREATED = "token.created", "API token made"
    TOKEN_REVOKED = "token.revoked", "API token revoked"
    OTP_ENROLLED = "otp.enrolled", "second factor enrolled"
    OTP_RECOVERY_CODES = "otp.recovery_codes", "recovery codes regenerated"
    OTP_RESET = "otp.reset", "second factor reset"
    OTP_FAILED = "otp.failed", "second factor refused"
    NODE_PENDING = "node.pending", "node pending enrolment"
    NODE_ACCEPTED = "node.accepted", "node accepted"
    NODE_REJECTED = "node.rejected", "node rejected"
    NODE_REVOKED = "node.revoked", "node revoked"
    NODE_REKEYED = "node.rekeyed", "node re-keyed"
    NODE_FORGOTTEN = "node.forgotten", "node forgotten"
    NODE_KEY_CONFLICT = "node.key_conflict", "node key conflict"
    NODE_REGISTRATIONS_REFUSED = "node.registrations_refused", "registrations refused"
    AUDIT_EXPORTED = "audit.exported", "audit exported"
    AUDIT_PRUNED = "audit.pruned", "audit pruned"


# A kind is lower-case words joined by dots: "login", "job.finished", "approval.expired".
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def kinds_in_group(prefix: str) -> list[str]:
    """The known kinds starting with ``prefix.`` (``job`` -> job.submitted, job.finished)."""
    return [kind for kind in Kind.values if kind.startswith(prefix + ".") or kind == prefix]


def kind_groups() -> list[str]:
    """The first words of the known kinds that have more than one kind."""
    firsts = [kind.split(".", 1)[0] for kind in Kind.values]
    return sorted({first for first in firsts if firsts.count(first) > 1})
