"""Second factor (django-otp): TOTP devices and recovery codes, enrolled, checked and reset here.

The login is two steps for a person with a confirmed TOTP device: the password (Django's
``LoginView``), then a code on ``/login/verify/``. At the password step ``mark_login`` writes
what is still owed into the session (``PENDING_KEY``: ``verify``, or ``enrol`` for a person
whose roles require a second factor and who has none); ``SecondFactorMiddleware`` and the
WebSocket consumers refuse every other page, the API by session and every socket while it is
there. A session with nothing owed costs no query: the flag is read from the session.

Every change is announced on ``portal.accounts.signals.account_changed`` inside its
transaction (the audit app records it), never with a secret or a code.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp import verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.accounts import signals
from portal.rbac.models import ADMIN_ROLE
from portal.rbac.policy import admin_by_roles

logger = logging.getLogger(__name__)

# What the session still owes after the password step; absent once nothing is owed.
PENDING_KEY = "switchboard_second_factor"
PENDING_VERIFY = "verify"
PENDING_ENROL = "enrol"
RECOVERY_CODES = 10
TOTP_DIGITS = 6  # django-otp's default for a new TOTPDevice, which enrolment keeps
DEVICE_NAME = "authenticator"
RECOVERY_NAME = "recovery codes"


class SecondFactorError(Exception):
    """A code that cannot be accepted, with a message the person can act on."""


@dataclass(frozen=True)
class Enrolment:
    """An unconfirmed TOTP device's secret as the enrolment page shows it (this person's
    browser only): the otpauth:// URI, its QR code as inline SVG, and the base32 secret."""

    device: TOTPDevice
    uri: str
    svg: str
    secret: str


def required_roles() -> frozenset[str]:
    """The roles whose members must have a second factor (``SWITCHBOARD_OTP_REQUIRED_ROLES``)."""
    return frozenset(getattr(settings, "SWITCHBOARD_OTP_REQUIRED_ROLES", ()))


def required_by_roles(user: User, role_names: Collection[str]) -> bool:
    """Whether a person with these role names must have a second factor; a superuser counts
    as an admin (``policy.admin_by_roles``) when ``admin`` is required. No query."""
    required = required_roles()
    if not required:
        return False
    if required & set(role_names):
        return True
    return ADMIN_ROLE in required and admin_by_roles(user, role_names)


def is_required(user: User) -> bool:
    """Whether this person's roles require a second factor (one query, none if no role does)."""
    if not required_roles():
        return False
    return required_by_roles(user, set(user.groups.values_list("name", flat=True)))


def is_enrolled(user: User) -> bool:
    """Whether the person has a confirmed TOTP device."""
    return bool(TOTPDevice.objects.filter(user=user, confirmed=True).exists())


def with_enrolment(users: QuerySet[User]) -> QuerySet[User]:
    """The accounts annotated with ``otp_enrolled``, in the same query (the Users page)."""
    confirmed = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    return users.annotate(otp_enrolled=Exists(confirmed))


def mark_login(user: User, session: Any) -> None:
    """At the password step: note in the session what is owed before it may reach anything."""
    if is_enrolled(user):
        session[PENDING_KEY] = PENDING_VERIFY
    elif is_required(user):
        session[PENDING_KEY] = PENDING_ENROL
    else:
        session.pop(PENDING_KEY, None)


def pending(session: Mapping[str, Any] | None) -> str:
    """What this session still owes (``verify``, ``enrol``), or "" if nothing."""
    if session is None:
        return ""
    return str(session.get(PENDING_KEY, ""))


def start_enrolment(user: User) -> Enrolment:
    """The person's unconfirmed TOTP device (made once and kept, so a reload shows the same
    secret), for the enrolment page."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    uri = str(device.config_url)
    # Drawn here, as SVG in the page: no QR service ever sees the secret.
    svg = segno.make(uri, error="m").svg_inline(scale=4)
    secret = uri.split("secret=", 1)[1].split("&", 1)[0]
    return Enrolment(device, uri, svg, secret)


def confirm_enrolment(user: User, code: str, *, request: HttpRequest | None = None) -> list[str]:
    """Confirm the person's new TOTP device with its first code; a fresh set of recovery codes,
    returned once. Any earlier device is replaced. Recorded as ``otp.enrolled``; the session
    (if given) is verified. ``SecondFactorError`` for a wrong code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        raise SecondFactorError("start again: this enrolment is no longer open")
    _check_allowed(device)
    # Checked in its own transaction: a failure's throttle count must be kept, not rolled back.
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        accepted = locked.verify_token(_clean(code))
    if not accepted:
        raise SecondFactorError("that code is not the one your app shows now; try again")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=locked.pk).delete()
        locked.confirmed = True
        locked.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user)
        signals.announce(
            signals.OTP_ENROLLED,
            user,
            request,
            user,
            f"second factor of {user.username} enrolled",
            {"device": "totp", "recovery_codes": len(codes)},
        )
    if request is not None:
        otp_login(request, locked)
        request.session.pop(PENDING_KEY, None)
    logger.info("second factor of %s enrolled", user.username)
    return codes


def regenerate_recovery_codes(user: User, *, request: HttpRequest | None = None) -> list[str]:
    """Replace the person's recovery codes by a fresh set, returned once; recorded as
    ``otp.recovery_codes``. Only for an enrolled person (``SecondFactorError`` otherwise)."""
    if not is_enrolled(user):
        raise SecondFactorError("enrol an authenticator app first")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        signals.announce(
            signals.OTP_RECOVERY_CODES,
            user,
            request,
            user,
            f"recovery codes of {user.username} regenerated",
            {"recovery_codes": len(codes)},
        )
    return codes


def verify_code(user: User, code: str, request: HttpRequest) -> None:
    """The login's second step: a TOTP code or an unused recovery code (spent by this use).
    Verifies the session; ``SecondFactorError`` for a wrong code or while throttled
    (django-otp's growing delay per device after each failure), recorded as ``otp.failed``."""
    code = _clean(code)
    # An app's code is six digits, a recovery code is not: only the device it can be for is
    # tried, so a typo in one does not count against (throttle) the other.
    model = TOTPDevice if code.isdigit() and len(code) == TOTP_DIGITS else StaticDevice
    devices = list(model.objects.filter(user=user, confirmed=True))
    refusal = ""
    for device in devices:
        allowed, _ = device.verify_is_allowed()
        if not allowed:
            refusal = "too many wrong codes: wait a little and try again"
            continue
        # django_otp.verify_token locks the device row, so a code is accepted once.
        verified = verify_token(user, device.persistent_id, code)
        if verified is not None:
            otp_login(request, verified)
            request.session.pop(PENDING_KEY, None)
            return
    refusal = refusal or "wrong code: type the code your app shows now, or a recovery code"
    with transaction.atomic():
        signals.announce(
            signals.OTP_FAILED,
            user,
            request,
            user,
            f"second factor of {user.username} refused",
            {"reason": refusal},
        )
    raise SecondFactorError(refusal)


def reset_second_factor(user: User, *, actor: User, request: HttpRequest | None = None) -> int:
    """Delete the person's devices and recovery codes; how many devices. They enrol again at
    their next login if their roles require it. Recorded as ``otp.reset`` with the admin."""
    with transaction.atomic():
        removed: int = TOTPDevice.objects.filter(user=user).count()
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()  # the recovery codes with them
        summary = f"second factor of {user.username} reset"
        signals.announce(
            signals.OTP_RESET, actor, request, user, summary, {"devices_removed": removed}
        )
    logger.info("second factor of %s reset by %s", user.username, actor)
    return removed


def _new_recovery_codes(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def _check_allowed(device: TOTPDevice) -> None:
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        raise SecondFactorError("too many wrong codes: wait a little and try again")


def _clean(code: str) -> str:
    # Apps show "123 456"; people paste with spaces.
    return "".join(code.split())[:32]
