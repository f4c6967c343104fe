"""Querysets for nodes: which nodes a filter selects, and which have gone quiet."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connections, models
from django.utils import timezone

from agents.filters import Filter
from portal.inventory.filtering import filter_q

# Three missed registrations at the nodes' default 300 s interval.
DEFAULT_STALE_AFTER = 900


def stale_after() -> timedelta:
    """How long after its last registration a node counts as stale.

    ``SWITCHBOARD_NODE_STALE_AFTER`` seconds, 900 by default.
    """
    return timedelta(seconds=getattr(settings, "SWITCHBOARD_NODE_STALE_AFTER", DEFAULT_STALE_AFTER))


class NodeQuerySet(models.QuerySet):
    def matching(self, filter: Filter) -> NodeQuerySet:
        """The nodes ``filter`` selects, evaluated in the database (see ``filtering``).

        Equal to ``[n for n in self if filter.matches(n)]``; raises ``UnsupportedFilter`` when
        the database cannot evaluate a part of the filter the way the nodes do.
        """
        if filter.is_empty():
            return self.all()
        return self.filter(filter_q(filter, connections[self.db].vendor))

    def stale(self) -> NodeQuerySet:
        """Nodes not heard from for ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.filter(last_seen__lt=timezone.now() - stale_after())

    def fresh(self) -> NodeQuerySet:
        """Nodes heard from within ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.filter(last_seen__gte=timezone.now() - stale_after())
