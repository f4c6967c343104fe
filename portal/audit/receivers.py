"""Logins, logouts and failed logins, as django.contrib.auth announces them, changes of
roles and grants, as ``portal.rbac.signals`` announces them, and changes of accounts and API
tokens, as ``portal.accounts.signals`` announces them.

Signals because Django's login views offer no other hook, and because rbac and accounts,
below audit, import no app above them. Each receiver records.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest

from portal.accounts import signals as account_signals
from portal.audit.chain import clean_text
from portal.audit.kinds import Kind
from portal.audit.services import record_event
from portal.rbac import signals as rbac_signals

# Which credential names the username; Django has already masked the password's value.
USERNAME_KEYS = ("username", "email", "login")


def on_login(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    record_event(
        Kind.LOGIN,
        actor=user,
        request=request,
        outcome="ok",
        summary=f"{user.get_username()} logged in",
    )


def on_logout(sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    if user is None:  # a logout without a session: nobody to record
        return
    record_event(
        Kind.LOGOUT,
        actor=user,
        request=request,
        outcome="ok",
        summary=f"{user.get_username()} logged out",
    )


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Only the name tried is kept, never the (masked) password or other credentials.
    tried = next((str(credentials[key]) for key in USERNAME_KEYS if credentials.get(key)), "")
    tried = clean_text(tried, 150)
    record_event(
        Kind.LOGIN_FAILED,
        actor=tried,
        request=request,
        roles=[],
        outcome="failed",
        summary=f"failed login as {tried!r}" if tried else "failed login without a username",
        data={"username": tried},
    )


# Each rbac change, as the kind the audit history files it under.
ACCESS_KINDS = {
    rbac_signals.ROLE: Kind.ROLE_CHANGED,
    rbac_signals.GRANT: Kind.GRANT_CHANGED,
    rbac_signals.OPERATOR_ROLES: Kind.OPERATOR_ROLES_CHANGED,
}


def on_access_changed(
    sender: Any,
    change: str,
    actor: User | None,
    request: HttpRequest | None,
    agent: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    **kwargs: Any,
) -> None:
    kind = ACCESS_KINDS[change]
    state = after or before or {}
    subject = state.get("role") or state.get("operator", "")
    record_event(
        kind,
        actor=actor,
        request=request,
        agent=agent,
        summary=f"{kind} {subject}".strip(),
        data={"before": before, "after": after},
    )


# Each account or token change, as the kind the audit history files it under.
ACCOUNT_KINDS = {
    account_signals.USER_CREATED: Kind.USER_CREATED,
    account_signals.USER_CHANGED: Kind.USER_CHANGED,
    account_signals.USER_DEACTIVATED: Kind.USER_DEACTIVATED,
    account_signals.USER_REACTIVATED: Kind.USER_REACTIVATED,
    account_signals.USER_PASSWORD_RESET: Kind.USER_PASSWORD_RESET,
    account_signals.TOKEN_CREATED: Kind.TOKEN_CREATED,
    account_signals.TOKEN_REVOKED: Kind.TOKEN_REVOKED,
    account_signals.OTP_ENROLLED: Kind.OTP_ENROLLED,
    account_signals.OTP_RECOVERY_CODES: Kind.OTP_RECOVERY_CODES,
    account_signals.OTP_RESET: Kind.OTP_RESET,
    account_signals.OTP_FAILED: Kind.OTP_FAILED,
}
# Account events that are refusals, as login.failed is: recorded with outcome "failed".
FAILED_CHANGES = frozenset({account_signals.OTP_FAILED})


def on_account_changed(
    sender: Any,
    change: str,
    actor: User | None,
    request: HttpRequest | None,
    subject: str,
    summary: str,
    data: dict[str, Any],
    **kwargs: Any,
) -> None:
    # The account the change is about is kept beside the actor: "who did it, to whom".
    record_event(
        ACCOUNT_KINDS[change],
        actor=actor,
        request=request,
        outcome="failed" if change in FAILED_CHANGES else "ok",
        summary=summary,
        data={"user": subject, **data},
    )
