"""Operator accounts: demo seeding, the command line's tokens and acting user."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.core.management.base import CommandError
from django.db import transaction

from portal.accounts.tokens import create_token
from portal.rbac.services import seed_demo_roles

# Each demo account: (username, role, is_superuser). ``noc`` also gets DEMO_NOC_ROLE, whose
# grants (portal.rbac.services.seed_demo_roles) show the limits at once.
DEMO_ACCOUNTS = (
    ("admin", "admin", True),
    ("manager", "manager", False),
    ("noc", "operator", False),
)


@dataclass(frozen=True)
class DemoLogin:
    """A demo account's username and the password it was given."""

    username: str
    password: str
    role: str


@transaction.atomic
def ensure_demo_users(password: str | None = None) -> list[DemoLogin]:
    """Create or reset the demo accounts; returns the logins to print.

    With ``password`` unset every account gets a fresh random password, so a demo left running
    on a shared machine is not open to a well-known password.
    """
    logins = []
    for username, group_name, is_superuser in DEMO_ACCOUNTS:
        user, _ = User.objects.get_or_create(username=username)
        user.is_superuser = is_superuser
        user.is_staff = is_superuser
        user_password = password or secrets.token_urlsafe(9)
        user.set_password(user_password)
        user.save()
        group, _ = Group.objects.get_or_create(name=group_name)
        user.groups.add(group)
        logins.append(DemoLogin(username, user_password, group_name))
    noc_role = seed_demo_roles()
    User.objects.get(username="noc").groups.add(noc_role)
    return [
        DemoLogin(login.username, login.password, f"{login.role}, {noc_role.name}")
        if login.username == "noc"
        else login
        for login in logins
    ]


CLI_TOKEN_NAME = "manage.py issue_token"  # noqa: S105 (a name, not a secret)


def issue_token(username: str, name: str = CLI_TOKEN_NAME, expires_days: int | None = None) -> str:
    """A new API token of the user, its secret returned once (``tokens.create_token``; made
    by the system, as the host's shell is). Raises ``User.DoesNotExist``, or ``TokenError``."""
    user = User.objects.get(username=username)
    return create_token(user, name, expires_days, actor=None).secret


def operator_for_command(username: str) -> User:
    """The operator a management command acts as; a ``CommandError`` naming them if unknown
    or deactivated (a deactivated account acts nowhere, the command line included)."""
    try:
        user = User.objects.get(username=username)
    except User.DoesNotExist as exc:
        raise CommandError(f"no operator named {username!r}") from exc
    if not user.is_active:
        raise CommandError(f"operator {username!r} is deactivated")
    return user
