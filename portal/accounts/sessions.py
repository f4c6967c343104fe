"""Ending a person's live connections when their session ends.

A WebSocket is authenticated once, when it opens; a logout, a password change or a
deactivation afterwards would not reach it. Every consumer of a logged-in person joins
``session_group(user_id)``, and ``end_sessions`` sends it a ``session.ended`` message: the
consumers of the ended session (or all of the person's, for a credential change) close.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.utils import timezone

logger = logging.getLogger(__name__)

SESSION_ENDED_TYPE = "session.ended"


def session_group(user_id: int) -> str:
    """The Channels group every live connection of this person joins."""
    return f"user.{user_id}"


def session_tag(session_key: str | None) -> str:
    """A session's name on the channel layer: a digest, never the key.

    The key is a credential; group messages travel over the broker (the embedded profile's
    STOMP layer), where a digest can name the session without letting anyone use it.
    """
    if not session_key:
        return ""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def end_sessions(user_id: int, reason: str, session_key: str | None = None) -> None:
    """Close this person's live connections: one session's, or every one (``None``).

    A layer failure is logged, never raised: a logout or a password change must not fail
    because the channel layer is down.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": SESSION_ENDED_TYPE, "session": session_tag(session_key), "reason": reason}
    try:
        async_to_sync(layer.group_send)(session_group(user_id), message)
    except Exception:
        logger.exception("could not close the live connections of user %s (%s)", user_id, reason)


DB_SESSION_ENGINES = frozenset(
    {"django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"}
)


def delete_sessions(user_id: int) -> int:
    """Delete every unexpired stored session of this person; how many. For a deactivation.

    Sessions are stored signed and encoded, with no column naming their user, so each live one
    is decoded (once per deactivation, a rare act; a login costs nothing extra). With another
    session engine nothing is deleted here and the login check does it: Django refuses an
    inactive account's session at its next request.
    """
    if settings.SESSION_ENGINE not in DB_SESSION_ENGINES:
        return 0
    wanted = str(user_id)
    keys = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(2000)
        if str(session.get_decoded().get(SESSION_KEY)) == wanted
    ]
    # Through the engine's store, so that cached_db drops its cached copy as well.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in keys:
        store(session_key=key).delete()
    return len(keys)
