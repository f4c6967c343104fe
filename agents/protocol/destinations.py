"""STOMP destination names: the only place where they are spelled out.

Every name starts with the collective, so broker ACLs and network-of-brokers filters can
scope a sub-collective's traffic by prefix (see docs/protocol.md).
"""

import re

NAME_RE = re.compile(r"[A-Za-z0-9_-]+")


def validate_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe destination component, else raise ValueError.

    Dots, slashes and wildcards are refused because brokers give them meaning
    (``.`` separates levels, ``*`` and ``>`` are ActiveMQ wildcards).
    """
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"invalid {kind} name {value!r}: use only letters, digits, '_' and '-'")
    return value


def broadcast_topic(collective: str, agent: str) -> str:
    """Topic every node with ``agent`` subscribes to in ``collective``."""
    validate_name("collective", collective)
    validate_name("agent", agent)
    return f"/topic/{collective}.{agent}.agent"


def directed_queue(collective: str) -> str:
    """Queue for requests addressed to single nodes (selector on ``mc_identity``)."""
    validate_name("collective", collective)
    return f"/queue/{collective}.nodes"


def reply_queue(collective: str, client_id: str) -> str:
    """Queue one client reads its replies from; named in each request's ``reply-to``."""
    validate_name("collective", collective)
    validate_name("client id", client_id)
    return f"/queue/{collective}.reply.{client_id}"


def registration_queue(collective: str) -> str:
    """Queue nodes send their sealed Registration to; the portal's registration consumers
    compete on it, so each registration is taken by exactly one of them."""
    validate_name("collective", collective)
    return f"/queue/{collective}.registration"
