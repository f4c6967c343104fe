"""API tokens: made, checked and revoked here only.

A token is ``sbt_`` and 40 URL-safe characters (240 random bits); the database keeps its
SHA-256, never the secret, so a copy of the database gives nobody a working token. A plain
hash and no salt is enough for a random secret of that length (no dictionary to try), and it
lets a request find its token with one indexed lookup. Tokens converted from DRF's (40 hex
digits) keep working: the lookup hashes whatever was presented.

Every change is announced on ``portal.accounts.signals.account_changed`` inside its
transaction (the audit app records it).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from portal.accounts import signals
from portal.accounts.models import ApiToken

logger = logging.getLogger(__name__)

KEY_PREFIX = "sbt_"
PREFIX_SHOWN = 12
# last_used is written at most this often per token: a script calling the API in a loop
# costs one UPDATE a minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)
# What the tokens page offers, in days. No "never" on the page, for anyone: an admin's token is
# the strongest credential there is and a forgotten one should die on its own. A host's shell
# (``manage.py issue_token``, already all-powerful) may still make one without an expiry.
EXPIRY_DAYS = (30, 90, 365)
DEFAULT_EXPIRY_DAYS = 90
NAME_MAX = 100


class TokenError(Exception):
    """A token that cannot be made or revoked; ``errors`` maps each field to the problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class TokenRefused(Exception):
    """A presented token that does not authenticate, with a message its script's owner can act
    on (expired when, revoked, account deactivated)."""


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: the row, and the secret, which exists nowhere else after this."""

    token: ApiToken
    secret: str


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a presented or new secret: what the database holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def token_state(token: ApiToken) -> dict[str, object]:
    """A token as the audit history shows it: never the secret or its hash."""
    return {
        "name": token.name,
        "owner": token.user.get_username(),
        "prefix": token.prefix,
        "expires": token.expires.isoformat() if token.expires else None,
    }


def create_token(
    owner: User,
    name: str,
    expires_days: int | None,
    *,
    actor: User | None,
    request: HttpRequest | None = None,
) -> IssuedToken:
    """A new named token of ``owner`` expiring in ``expires_days`` (None: never); the secret is
    returned once. ``TokenError`` for an empty name or a bad expiry. A deactivated owner's
    token is refused at use, and revoked when the account is reactivated."""
    name = name.strip()
    errors: dict[str, str] = {}
    # Names need not be unique: the prefix shown beside each tells two "ci" tokens apart.
    if not name or len(name) > NAME_MAX:
        errors["name"] = f"give the token a name of 1 to {NAME_MAX} characters"
    if expires_days is not None and expires_days <= 0:
        errors["expires"] = "a token expires after a whole number of days, at least 1"
    if errors:
        raise TokenError(errors)
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    now = timezone.now()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=owner,
            name=name,
            prefix=secret[:PREFIX_SHOWN],
            key_hash=hash_key(secret),
            created=now,
            expires=now + timedelta(days=expires_days) if expires_days is not None else None,
        )
        _announce(signals.TOKEN_CREATED, actor, request, owner, token_state(token))
    logger.info("API token %s of %s made by %s", token.prefix, owner, actor)
    return IssuedToken(token, secret)


def revoke_token(
    token: ApiToken, *, actor: User | None, request: HttpRequest | None = None
) -> bool:
    """Revoke one token (at once: the next request with it is a 401); False if it already was."""
    now = timezone.now()
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=actor
        )
        if not changed:
            return False
        token.refresh_from_db()
        _announce(signals.TOKEN_REVOKED, actor, request, token.user, token_state(token))
    logger.info("API token %s of %s revoked by %s", token.prefix, token.user, actor)
    return True


def revoke_all_tokens(owner: User, *, actor: User | None) -> list[str]:
    """Revoke every unrevoked token of ``owner`` in one UPDATE; the prefixes revoked. For a
    deactivation or a reactivation, which record them in their own event (``users``)."""
    with transaction.atomic():
        tokens = ApiToken.objects.select_for_update().filter(user=owner, revoked_at__isnull=True)
        prefixes = sorted(tokens.values_list("prefix", flat=True))
        tokens.update(revoked_at=timezone.now(), revoked_by=actor)
    return prefixes


def authenticate_key(key: str) -> ApiToken:
    """The token this secret names, its owner loaded, if it may be used now; else
    ``TokenRefused`` saying why. Notes the use (at most once a minute per token)."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None:
        raise TokenRefused("Invalid token.")
    if token.revoked_at is not None:
        raise TokenRefused(
            f"This API token ({token.prefix}…) was revoked on {_when(token.revoked_at)}."
        )
    now = timezone.now()
    if token.expires is not None and token.expires <= now:
        raise TokenRefused(
            f"This API token ({token.prefix}…) expired on {_when(token.expires)};"
            " make a new one on your API tokens page."
        )
    if not token.user.is_active:
        raise TokenRefused("This token's account is deactivated.")
    _note_use(token, now)
    return token


def _note_use(token: ApiToken, now: datetime) -> None:
    # A conditional UPDATE: of many requests in the same minute, in any number of processes,
    # only the first writes.
    if token.last_used is not None and now - token.last_used < LAST_USED_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_EVERY)
    ).update(last_used=now)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _announce(
    change: str,
    actor: User | None,
    request: HttpRequest | None,
    owner: User,
    state: dict[str, object],
) -> None:
    verb = "made" if change == signals.TOKEN_CREATED else "revoked"
    summary = f"API token {state['name']!r} ({state['prefix']}…) of {owner.get_username()} {verb}"
    signals.announce(change, actor, request, owner, summary, dict(state))
