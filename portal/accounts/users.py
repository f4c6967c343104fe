"""People's accounts, as admins keep them on the Users page: every change goes through here.

Each function writes in one transaction and announces the change on
``portal.accounts.signals.account_changed`` inside it (the audit app records who did what,
with before and after; never a password). Role membership goes through
``portal.rbac.services.set_operator_roles`` (recorded there as ``operator.roles_changed``).
Who may call these is the views' check (``policy.may_administer``); the rules an admin cannot
break even so (deactivating themselves, dropping their own admin role) are checked here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.accounts import signals
from portal.accounts.sessions import delete_sessions, end_sessions
from portal.accounts.tokens import revoke_all_tokens
from portal.rbac.services import SELF_DEMOTION as SELF_DEMOTION  # the page shows it
from portal.rbac.services import GrantError, set_operator_roles

logger = logging.getLogger(__name__)

# Where an account comes from. Only local accounts exist until LDAP and OIDC arrive (issue 17);
# the filter and the column are there so that the page does not change shape then.
SOURCE_LOCAL = "local"
SOURCES = (SOURCE_LOCAL,)
ACTIVE_CHOICES = {"yes": True, "no": False}
# The last-login filter: signed in within 30 days, not within 90 (or never), never.
LAST_LOGIN_CHOICES = {
    "recent": "signed in within 30 days",
    "stale": "not signed in for 90 days, or never",
    "never": "never signed in",
}
EDITABLE_FIELDS = ("first_name", "last_name", "email")
SELF_DEACTIVATION = "you cannot deactivate your own account: ask another admin"


class UserError(Exception):
    """A change to an account that cannot be made; ``errors`` maps each field to the problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def system_usernames() -> frozenset[str]:
    """Accounts that are not people and are never listed or edited: django-guardian's
    anonymous user (its default name, and the configured one if a site set one)."""
    names = {"AnonymousUser"}
    configured = getattr(settings, "GUARDIAN_ANONYMOUS_USER_NAME", None)
    if configured:
        names.add(str(configured))
    return frozenset(names)


def people() -> QuerySet[User]:
    """Every account of a person: what the Users page lists and edits."""
    return User.objects.exclude(username__in=system_usernames())


@dataclass(frozen=True)
class UserListQuery:
    """The Users page's search: text (username, name, e-mail), role, source, active, last
    login. ``from_params`` raises ``UserError`` naming a bad value."""

    text: str = ""
    role: str = ""
    source: str = ""
    active: bool | None = None
    last_login: str = ""
    params: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> UserListQuery:
        errors: dict[str, str] = {}
        text = params.get("q", "").strip()[:150]
        role = params.get("role", "").strip()
        source = params.get("source", "").strip()
        if source and source not in SOURCES:
            errors["source"] = f"source must be one of {', '.join(SOURCES)}"
        active_text = params.get("active", "").strip()
        if active_text and active_text not in ACTIVE_CHOICES:
            errors["active"] = "active must be yes or no"
        last_login = params.get("last_login", "").strip()
        if last_login and last_login not in LAST_LOGIN_CHOICES:
            errors["last_login"] = f"last_login must be one of {', '.join(LAST_LOGIN_CHOICES)}"
        if errors:
            raise UserError(errors)
        kept = {k: v for k, v in params.items() if k in {"q", "role", "source", "active",
                                                        "last_login"} and v}  # fmt: skip
        return cls(text, role, source, ACTIVE_CHOICES.get(active_text), last_login, kept)

    def apply(self, users: QuerySet[User]) -> QuerySet[User]:
        """The matching accounts by username, each with its roles prefetched: the page runs the
        same three queries (count, page, roles) for ten accounts or ten thousand."""
        if self.text:
            users = users.filter(
                Q(username__icontains=self.text)
                | Q(first_name__icontains=self.text)
                | Q(last_name__icontains=self.text)
                | Q(email__icontains=self.text)
            )
        if self.role:
            users = users.filter(groups__name=self.role)
        # Every account is local for now (SOURCES): the source filter narrows nothing yet.
        if self.active is not None:
            users = users.filter(is_active=self.active)
        now = timezone.now()
        if self.last_login == "recent":
            users = users.filter(last_login__gte=now - timedelta(days=30))
        elif self.last_login == "stale":
            users = users.filter(
                Q(last_login__isnull=True) | Q(last_login__lt=now - timedelta(days=90))
            )
        elif self.last_login == "never":
            users = users.filter(last_login__isnull=True)
        roles = Prefetch("groups", queryset=Group.objects.order_by("name"))
        return users.prefetch_related(roles).order_by("username")


@dataclass(frozen=True)
class UserSpec:
    """What an admin types for a new account, or an account's new details."""

    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()


def account_state(user: User) -> dict[str, Any]:
    """An account as the audit history shows it: never its password."""
    return {
        "username": user.get_username(),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "active": user.is_active,
    }


def _check_details(spec: UserSpec, errors: dict[str, str]) -> None:
    if spec.email.strip():
        try:
            validate_email(spec.email.strip())
        except ValidationError:
            errors["email"] = f"{spec.email!r} is not an e-mail address"
    for name in ("first_name", "last_name"):
        if len(getattr(spec, name)) > 150:
            errors[name] = "at most 150 characters"


def _check_password(password: str, user: User | None, errors: dict[str, str]) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = " ".join(exc.messages)


def create_user(
    spec: UserSpec,
    *,
    password: str | None,
    actor: User | None,
    request: HttpRequest | None = None,
) -> User:
    """A new local account with these details and roles, and ``password``; with ``None`` it
    has no usable password until its owner follows a set-password link
    (``send_password_link``, which needs an e-mail address). ``UserError`` naming each bad field.
    """
    username = spec.username.strip()
    errors: dict[str, str] = {}
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        errors["username"] = "letters, digits and @ . + - _ only"
    if not username or len(username) > 150:
        errors["username"] = "a username is 1 to 150 characters"
    elif username in system_usernames():
        errors["username"] = f"{username!r} is reserved for the system"
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = f"an account named {username!r} exists"
    _check_details(spec, errors)
    if password is None and not spec.email.strip():
        errors["email"] = "an e-mail address is needed to send a set-password link"
    if password is not None:
        _check_password(password, User(username=username, email=spec.email), errors)
    unknown = sorted(set(spec.roles) - set(Group.objects.values_list("name", flat=True)))
    if unknown:
        errors["roles"] = f"no role named {', '.join(unknown)}"
    if errors:
        raise UserError(errors)
    with transaction.atomic():
        user = User(
            username=username,
            first_name=spec.first_name.strip(),
            last_name=spec.last_name.strip(),
            email=spec.email.strip(),
        )
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save()
        state = {
            **account_state(user),
            "roles": sorted(spec.roles),
            "password": "set" if password is not None else "to be set by link",
        }
        signals.announce(
            signals.USER_CREATED,
            actor,
            request,
            user,
            f"account {username} created",
            {"before": None, "after": state},
        )
        if spec.roles:
            set_operator_roles(user, spec.roles, actor=actor, request=request)
    logger.info("account %s created by %s", username, actor)
    return user


def update_user(
    user: User,
    spec: UserSpec,
    *,
    actor: User | None,
    request: HttpRequest | None = None,
) -> list[str]:
    """Change the account's name and e-mail (the username stays: the audit history and the
    nodes' policies know people by it); the fields changed. ``UserError`` for bad ones."""
    errors: dict[str, str] = {}
    _check_details(spec, errors)
    if errors:
        raise UserError(errors)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        new = {
            "first_name": spec.first_name.strip(),
            "last_name": spec.last_name.strip(),
            "email": spec.email.strip(),
        }
        changed = [name for name in EDITABLE_FIELDS if getattr(user, name) != new[name]]
        if not changed:
            return []
        before = {name: getattr(user, name) for name in changed}
        for name in changed:
            setattr(user, name, new[name])
        user.save(update_fields=changed)
        signals.announce(
            signals.USER_CHANGED,
            actor,
            request,
            user,
            f"account {user.username} changed: {', '.join(changed)}",
            {"before": before, "after": {name: new[name] for name in changed}},
        )
    return changed


def set_roles(
    user: User,
    roles: Iterable[str],
    *,
    actor: User,
    request: HttpRequest | None = None,
) -> None:
    """Make ``roles`` exactly the account's roles (``rbac.services.set_operator_roles``, which
    records ``operator.roles_changed`` and refuses an admin's dropping their own admin role)."""
    try:
        set_operator_roles(user, roles, actor=actor, request=request)
    except GrantError as exc:
        raise UserError(exc.errors) from exc


def deactivate_user(user: User, *, actor: User, request: HttpRequest | None = None) -> None:
    """Sign the person out everywhere at once: the account is deactivated, its sessions
    deleted and its API tokens revoked in one transaction; once it commits, its open
    WebSockets close (``end_sessions``). An admin cannot deactivate themselves."""
    if actor.pk == user.pk:
        raise UserError({"user": SELF_DEACTIVATION})
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if not locked.is_active:
            raise UserError({"user": f"{user.username} is already deactivated"})
        # An UPDATE, not save(): the post_save receiver would close the sockets a second time.
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        tokens = revoke_all_tokens(user, actor=actor)
        sessions = delete_sessions(user.pk)
        signals.announce(
            signals.USER_DEACTIVATED,
            actor,
            request,
            user,
            f"account {user.username} deactivated",
            {"tokens_revoked": tokens, "sessions_ended": sessions},
        )
        user_id = user.pk
        transaction.on_commit(lambda: end_sessions(user_id, "deactivated"))
    logger.info("account %s deactivated by %s", user.username, actor)


def reactivate_user(user: User, *, actor: User, request: HttpRequest | None = None) -> None:
    """Let the person sign in again. Their API tokens stay revoked, any made while the account
    was deactivated included: they make new ones."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.is_active:
            raise UserError({"user": f"{user.username} is active"})
        User.objects.filter(pk=user.pk).update(is_active=True)
        user.is_active = True
        # Tokens made while it was deactivated (the shell's issue_token can) die here too.
        tokens = revoke_all_tokens(user, actor=actor)
        signals.announce(
            signals.USER_REACTIVATED,
            actor,
            request,
            user,
            f"account {user.username} reactivated",
            {"tokens_revoked": tokens},
        )


def set_password(
    user: User, password: str, *, actor: User, request: HttpRequest | None = None
) -> None:
    """Give the account a new password (checked by the password validators). Its sessions
    end and its WebSockets close (Django's session hash and ``accounts.receivers``)."""
    errors: dict[str, str] = {}
    _check_password(password, user, errors)
    if errors:
        raise UserError(errors)
    with transaction.atomic():
        user.set_password(password)
        user.save()
        signals.announce(
            signals.USER_PASSWORD_RESET,
            actor,
            request,
            user,
            f"password of {user.username} reset by an admin",
            {"method": "set"},
        )


def password_link(user: User, request: HttpRequest | None) -> str:
    """The absolute set-password link for ``user``: Django's password-reset token, good for
    ``PASSWORD_RESET_TIMEOUT`` and spent once the password changes."""
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    base = getattr(settings, "SWITCHBOARD_PUBLIC_URL", "")
    if base:
        return base.rstrip("/") + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path


def send_password_link(user: User, *, actor: User, request: HttpRequest | None = None) -> None:
    """E-mail the person a set-password link, through the configured e-mail backend (the
    console in the embedded profile). ``UserError`` if they have no address or it could not
    be sent; recorded only once it was."""
    if not user.email:
        raise UserError({"email": f"{user.username} has no e-mail address to send a link to"})
    link = password_link(user, request)
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    body = (
        f"Hello {user.get_full_name() or user.username},\n\n"
        f"Set your Switchboard password (username {user.username}) here, within {hours} hours:\n"
        f"{link}\n\nThe link works once. If you did not expect this, tell your admin.\n"
    )
    try:
        send_mail("Set your Switchboard password", body, None, [user.email])
    except Exception as exc:  # any backend's failure: smtplib, socket, ...
        logger.warning("could not send a password link to %s: %s", user.email, exc)
        raise UserError({"email": f"the e-mail to {user.email} could not be sent: {exc}"}) from exc
    with transaction.atomic():
        signals.announce(
            signals.USER_PASSWORD_RESET,
            actor,
            request,
            user,
            f"set-password link sent to {user.username}",
            {"method": "link", "email": user.email},
        )
