"""Every change to the inventory goes through these functions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from django.utils import timezone

from agents.protocol import Registration
from portal.inventory.models import Node
from portal.inventory.search import SEARCH_FIELDS

logger = logging.getLogger(__name__)

# Every column a newer registration replaces; first_seen is kept from the first insert.
UPDATED_FIELDS = [
    "collectives",
    "facts",
    *SEARCH_FIELDS,  # computed from the facts by NodeQuerySet.bulk_create
    "classes",
    "agents",
    "public_key",
    "last_seen",
    "registered_at",
]


def record_registrations(registrations: Sequence[Registration]) -> int:
    """Upsert nodes from a batch of registrations in one ``INSERT ... ON CONFLICT``.

    Within the batch the newest ``msgtime`` per identity wins; ``first_seen`` is set on the
    first insert only and ``last_seen`` is now; the search columns are computed from the facts
    (``search``). Returns the number of nodes written. Across batches the later write wins
    (registrations arrive in order in practice).
    """
    newest: dict[str, Registration] = {}
    for reg in registrations:
        seen = newest.get(reg.identity)
        if seen is None or reg.msgtime >= seen.msgtime:
            newest[reg.identity] = reg
    if not newest:
        return 0
    now = timezone.now()
    rows = [
        Node(
            identity=reg.identity,
            collectives=list(reg.collectives),
            facts=reg.facts,
            classes=list(reg.classes),
            agents=list(reg.agents),
            public_key=reg.public_key,
            first_seen=now,
            last_seen=now,
            registered_at=datetime.fromtimestamp(reg.msgtime, tz=UTC),
        )
        for reg in newest.values()
    ]
    Node.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["identity"], update_fields=UPDATED_FIELDS
    )
    logger.debug("recorded %d registrations for %d nodes", len(registrations), len(rows))
    return len(rows)
