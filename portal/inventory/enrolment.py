"""Auto-acceptance: the rules under which a first-seen node is trusted without an admin.

Off unless ``SWITCHBOARD_AUTO_ACCEPT`` names rules (docs/operations.md#enrolment):

- ``token``: the registration's ``enrolment_proof`` is the HMAC of its identity and key id
  with ``SWITCHBOARD_ENROLMENT_TOKEN`` (the token itself never crosses the broker);
- ``key-dir``: its public key is one of the ``*.pub`` files in
  ``SWITCHBOARD_ENROLMENT_KEY_DIR`` (keys provisioned with the machines).

Either also needs the identity to match ``SWITCHBOARD_AUTO_ACCEPT_IDENTITIES`` (a regular
expression over the whole identity). The registration's seal was checked before this: the
sender holds the key it presents.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

from django.conf import settings

from agents.protocol import Registration
from agents.protocol.security import check_enrolment_proof, key_id, load_public_key

logger = logging.getLogger(__name__)

RULE_TOKEN = "token"  # noqa: S105 - a rule's name, not a secret
RULE_KEY_DIR = "key-dir"
RULES = (RULE_TOKEN, RULE_KEY_DIR)


def active_rules() -> list[str]:
    """The auto-accept rules in force, in the order they are tried."""
    return [rule for rule in RULES if rule in settings.SWITCHBOARD_AUTO_ACCEPT]


def auto_accept_rule(registration: Registration, kid: str) -> str | None:
    """The first rule that accepts this sealed registration's key for its identity, or None."""
    rules = active_rules()
    if not rules:
        return None
    if not re.fullmatch(settings.SWITCHBOARD_AUTO_ACCEPT_IDENTITIES, registration.identity):
        return None
    token = settings.SWITCHBOARD_ENROLMENT_TOKEN
    if RULE_TOKEN in rules and token and check_enrolment_proof(token, registration, kid):
        return "enrolment token"
    key_dir = settings.SWITCHBOARD_ENROLMENT_KEY_DIR
    if RULE_KEY_DIR in rules and key_dir and kid in enrolment_directory_keys(key_dir):
        return f"key listed in {key_dir}"
    return None


def enrolment_directory_keys(directory: str) -> frozenset[str]:
    """The key ids of the ``*.pub`` files in ``directory``; read again when it changes."""
    path = Path(directory)
    try:
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in path.glob("*.pub")))
    except OSError as exc:
        logger.warning("cannot read the enrolment key directory %s: %s", directory, exc)
        return frozenset()
    return _read_keys(directory, stamp)


@functools.lru_cache(maxsize=4)
def _read_keys(directory: str, stamp: tuple[tuple[str, int], ...]) -> frozenset[str]:
    ids = set()
    for name, _ in stamp:
        try:
            ids.add(key_id(load_public_key((Path(directory) / name).read_bytes())))
        except (OSError, ValueError) as exc:
            logger.warning(
                "enrolment key %s/%s is not an Ed25519 public key: %s", directory, name, exc
            )
    return frozenset(ids)
