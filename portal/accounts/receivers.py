"""Hooks on Django's auth events that end a person's live connections (``sessions``), and the
login's note of a second factor owed (``second_factor.mark_login``).

Django has a signal for a logout, none for a password change or a deactivation: those are
seen as a change of ``password`` or ``is_active`` on save, whichever code saves the user
(the admin, ``changepassword``, a script). A change of the person's roles is seen on the
user-group relation, from either side (``user.groups`` or ``group.user_set``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from portal.accounts.second_factor import mark_login
from portal.accounts.sessions import end_sessions
from portal.accounts.tokens import revoke_all_tokens

User = get_user_model()
# Saved on the instance between pre_save and post_save: its credentials as stored before.
_BEFORE = "_switchboard_credentials_before"
CREDENTIAL_FIELDS = frozenset({"password", "is_active"})


@receiver(user_logged_in, dispatch_uid="accounts.second_factor_on_login")
def second_factor_on_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """The password step is done: the session notes whether a code or an enrolment is owed
    (Django's login view has no other hook between the password and the redirect)."""
    if request is not None and hasattr(request, "session"):
        mark_login(user, request.session)


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
    """A new password or a deactivation closes every WebSocket of the person, once committed;
    a deactivation also revokes their API tokens.

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
    if reason == "deactivated":
        # A deactivation by another path than the Users page (the Django admin, a script):
        # the account's API tokens die with it, as ``users.deactivate_user`` makes them.
        revoke_all_tokens(instance, actor=None)
    transaction.on_commit(lambda: end_sessions(user_id, reason))


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="accounts.close_sockets_on_roles")
def close_sockets_on_role_change(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """A person lost a role: their WebSockets close, once committed, and the pages that
    reconnect are checked against the roles left (a job no longer visible is refused). A role
    added takes nothing away, so it closes nothing."""
    if action not in {"post_remove", "pre_clear"}:
        return
    if not reverse:  # user.groups.<action>(...)
        user_ids = [instance.pk]
    elif action == "pre_clear":  # group.user_set.clear(): who is in it before
        user_ids = list(instance.user_set.values_list("pk", flat=True))
    else:  # group.user_set.<action>(users)
        user_ids = sorted(pk_set or ())
    for user_id in user_ids:
        transaction.on_commit(lambda user_id=user_id: end_sessions(user_id, "roles changed"))
