"""Hooks on Django's auth events that end a person's live connections (``sessions``).

Django has a signal for a logout, none for a password change or a deactivation: those are
seen as a change of ``password`` or ``is_active`` on save, whichever code saves the user
(the admin, ``changepassword``, a script).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from portal.accounts.sessions import end_sessions

User = get_user_model()
# Saved on the instance between pre_save and post_save: its credentials as stored before.
_BEFORE = "_switchboard_credentials_before"
CREDENTIAL_FIELDS = frozenset({"password", "is_active"})


@receiver(user_logged_out, dispatch_uid="accounts.close_sockets_on_logout")
def close_sockets_on_logout(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """The logged-out session's WebSockets close (the person's other sessions stay)."""
    if user is None or request is None:
        return
    end_sessions(user.pk, "logged out", session_key=request.session.session_key)


@receiver(pre_save, sender=User, dispatch_uid="accounts.remember_credentials")
def remember_credentials(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Read the stored password and active flag before a save that may change them."""
    update_fields = kwargs.get("update_fields")
    if instance.pk is None or (update_fields is not None and not CREDENTIAL_FIELDS & update_fields):
        return  # a new user, or a save of other fields (last_login at every login)
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    setattr(instance, _BEFORE, before)


@receiver(post_save, sender=User, dispatch_uid="accounts.close_sockets_on_credentials")
def close_sockets_on_credential_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A new password or a deactivation closes every WebSocket of the person, once committed.

    Every one, not only other sessions': Django keeps the session that changed the password,
    and its page reconnects at once (a session that is no longer valid is refused then).
    """
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return
    if before["password"] != instance.password:
        reason = "password changed"
    elif before["is_active"] and not instance.is_active:
        reason = "deactivated"
    else:
        return
    user_id = instance.pk
    transaction.on_commit(lambda: end_sessions(user_id, reason))
