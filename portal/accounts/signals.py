"""What accounts announces: every change of a person's account and of an API token, with who
made it.

The audit app records each one (``portal.audit.receivers.on_account_changed``). A signal, as
rbac does, because accounts sits below audit in the layers (docs/architecture.md) and imports
no app above it; it is sent inside the change's transaction, so a change that cannot be
recorded is not made.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.dispatch import Signal
from django.http import HttpRequest

# What changed (the audit kinds of the same names, docs/audit.md). Names, not secrets.
USER_CREATED = "user.created"
USER_CHANGED = "user.changed"
USER_DEACTIVATED = "user.deactivated"
USER_REACTIVATED = "user.reactivated"
USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105
TOKEN_CREATED = "token.created"  # noqa: S105
TOKEN_REVOKED = "token.revoked"  # noqa: S105
OTP_ENROLLED = "otp.enrolled"
OTP_RECOVERY_CODES = "otp.recovery_codes"
OTP_RESET = "otp.reset"
OTP_FAILED = "otp.failed"  # a wrong code at the login's second step: a refusal, not a change

# Sent with: change (one of the above), actor (a User or None for the system), request
# (or None), subject (the username the change is about), summary, data (plain JSON).
account_changed = Signal()


def announce(
    change: str,
    actor: User | None,
    request: HttpRequest | None,
    subject: User,
    summary: str,
    data: dict[str, Any],
) -> None:
    """Send ``account_changed`` for one change of ``subject``'s account (inside its transaction)."""
    account_changed.send(
        sender=change,
        change=change,
        actor=actor,
        request=request,
        subject=subject.get_username(),
        summary=summary,
        data=data,
    )
