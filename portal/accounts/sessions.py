"""Ending a person's live connections when their session ends.

A WebSocket is authenticated once, when it opens; a logout, a password change or a
deactivation afterwards would not reach it. Every consumer of a logged-in person joins
``session_group(user_id)``, and ``end_sessions`` sends it a ``session.ended`` message: the
consumers of the ended session (or all of the person's, for a credential change) close.
"""

from __future__ import annotations

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
