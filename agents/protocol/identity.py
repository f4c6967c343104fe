"""Node identities: host-name-safe names, the one rule for the node, the wire and the portal.

An identity is shown on pages, put in URLs, logged and compared; restricting it to what a
host name may hold (letters, digits, ``.``, ``-``, ``_``; at most 253 characters; no leading
dot or dash) keeps markup, path separators, spaces and bidirectional controls out of all of
them. The underscore is allowed because real fleets use it (``web_01``) though DNS does not.
"""

from __future__ import annotations

import re

MAX_IDENTITY_LENGTH = 253
IDENTITY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}")


class InvalidIdentity(ValueError):
    """A node identity that is not host-name-safe; the message says which rule it breaks."""


def identity_problem(value: object) -> str | None:
    """Why ``value`` is not a valid identity, or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_IDENTITY_LENGTH:
        return f"is {len(value)} characters long, over {MAX_IDENTITY_LENGTH}"
    if value[0] in ".-":
        return f"must not start with {value[0]!r}"
    if not IDENTITY_RE.fullmatch(value):
        bad = next(ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in "._-")))
        return f"holds {bad!r} (U+{ord(bad):04X}); only letters, digits, '.', '-' and '_'"
    return None


def is_valid_identity(value: object) -> bool:
    """True for a host-name-safe identity."""
    return identity_problem(value) is None


def validate_identity(value: object) -> str:
    """``value`` if it is a valid identity, else ``InvalidIdentity`` naming the rule broken."""
    problem = identity_problem(value)
    if problem is not None:
        shown = value[:80] + "..." if isinstance(value, str) and len(value) > 80 else value
        raise InvalidIdentity(f"identity {shown!r} {problem}")
    assert isinstance(value, str)
    return value
