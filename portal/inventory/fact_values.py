"""A fact's values across the nodes a filter targets: the choices offered for a DDL input that
names a fact (``choices_from_fact``), e.g. the services the targeted nodes run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.db.models.fields.json import KeyTransform

from agents.filters import Filter
from portal.inventory.autocomplete import value_texts
from portal.inventory.models import Node
from portal.inventory.querysets import NodeQuerySet

# Enough nodes to see every value a fleet uses for a fact like "services"; beyond this the
# choices come from the first nodes by identity and say so.
MAX_NODES_SCANNED = 20_000
MAX_CHOICES = 200


@dataclass(frozen=True)
class FactChoices:
    fact: str
    values: list[tuple[str, int]]  # (value, how many targeted nodes have it), most common first
    nodes: int  # nodes read
    truncated: bool  # more nodes matched than were read


def fact_choices(target: Filter, fact: str, nodes: NodeQuerySet | None = None) -> FactChoices:
    """The values ``fact`` has on the fresh nodes ``target`` matches (list facts flattened).

    Only ``nodes`` are read (the ones a user may see, ``portal.inventory.visibility``); None: every
    node.
    """
    among: NodeQuerySet = Node.objects.all() if nodes is None else nodes
    rows = (
        among.matching(target)
        .fresh()
        .order_by("identity")
        .annotate(value=KeyTransform(fact, "facts"))
        .values_list("value", flat=True)[: MAX_NODES_SCANNED + 1]
    )
    counts: Counter[str] = Counter()
    read = 0
    for value in rows.iterator(chunk_size=2000):
        read += 1
        if read > MAX_NODES_SCANNED:
            break
        # Each text once per node (a list may repeat an element), as the filters read it.
        counts.update(value_texts("fact", value))
    values = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:MAX_CHOICES]
    return FactChoices(fact, values, min(read, MAX_NODES_SCANNED), read > MAX_NODES_SCANNED)
