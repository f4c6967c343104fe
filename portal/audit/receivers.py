"""Logins, logouts and failed logins, as django.contrib.auth announces them.

Signals because Django's login views offer no other hook. Each receiver records.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from portal.audit import kinds
from portal.audit.chain import clean_text
from portal.audit.services import record_event

# Which credential names the username; Django has already masked the password's value.
USERNAME_KEYS = ("username", "email", "login")


def on_login(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    record_event(
        kinds.LOGIN,
        actor=user,
        request=request,
        outcome="ok",
        summary=f"{user.get_username()} logged in",
    )


def on_logout(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is None:  # a logout without a session: nobody to record
        return
    record_event(
        kinds.LOGOUT,
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
        kinds.LOGIN_FAILED,
        actor=tried,
        request=request,
        roles=[],
        outcome="failed",
        summary=f"failed login as {tried!r}" if tried else "failed login without a username",
        data={"username": tried},
    )
