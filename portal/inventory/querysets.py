"""Querysets for nodes: which nodes a filter selects, and which have gone quiet."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.utils import timezone

from agents.filters import Filter
from portal.inventory.filtering import collective_q, filter_q
from portal.inventory.search import SEARCH_FIELDS

# Three missed registrations at the nodes' default 300 s interval.
DEFAULT_STALE_AFTER = 900


def stale_after() -> timedelta:
    """How long after its last registration a node counts as stale.

    ``SWITCHBOARD_NODE_STALE_AFTER`` seconds, 900 by default.
    """
    return timedelta(seconds=getattr(settings, "SWITCHBOARD_NODE_STALE_AFTER", DEFAULT_STALE_AFTER))


def with_search_fields(fields: Sequence[str]) -> list[str]:
    """``fields`` plus the search columns when ``facts`` is among them (they follow it)."""
    fields = list(fields)
    if "facts" in fields:
        fields += [name for name in SEARCH_FIELDS if name not in fields]
    return fields


class NodeQuerySet(models.QuerySet):
    """Nodes; every bulk write also fills the search columns from the facts being written."""

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``QuerySet.bulk_create``, with each node's search columns computed first."""
        objs = list(objs)
        vendor = connections[self.db].vendor
        for node in objs:
            node.fill_search_columns(vendor)
        if kwargs.get("update_fields"):
            kwargs["update_fields"] = with_search_fields(kwargs["update_fields"])
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(
        self, objs: Iterable[Any], fields: Sequence[str], *args: Any, **kwargs: Any
    ) -> int:
        """``QuerySet.bulk_update``; when ``facts`` is updated, so are the search columns."""
        objs = list(objs)
        fields = with_search_fields(fields)
        if "facts" in fields:
            vendor = connections[self.db].vendor
            for node in objs:
                node.fill_search_columns(vendor)
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        """``QuerySet.update``, refusing new facts without their search columns."""
        if "facts" in kwargs and not set(SEARCH_FIELDS) <= kwargs.keys():
            raise TypeError(
                "Node.facts cannot be updated in SQL alone: the search columns follow the facts; "
                "use save(), bulk_create() or bulk_update()"
            )
        return super().update(**kwargs)

    def matching(self, filter: Filter) -> NodeQuerySet:
        """The nodes ``filter`` selects, evaluated in the database (see ``filtering``).

        Equal to ``[n for n in self if filter.matches(n)]``; raises ``UnsupportedFilter`` when
        the database cannot evaluate a part of the filter the way the nodes do.
        """
        if filter.is_empty():
            return self.all()
        return self.filter(filter_q(filter, connections[self.db].vendor))

    def of_collective(self, name: str | None) -> NodeQuerySet:
        """The nodes a request in collective ``name`` can reach: every node for the main
        collective (the one they all register in), only its members for a sub-collective."""
        if not name or name == settings.SWITCHBOARD_COLLECTIVE:
            return self.all()
        return self.filter(collective_q(name, connections[self.db].vendor))

    def targeted_by(self, target: Filter, collective: str | None) -> NodeQuerySet:
        """The nodes a job's filter addresses in the inventory: those of its collective that
        match. The one query behind a plan's count and preview and the runner's inventory
        discovery (each adds ``fresh()``; the plan also counts ``stale()``)."""
        return self.of_collective(collective).matching(target)

    def stale(self) -> NodeQuerySet:
        """Nodes not heard from for ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.filter(last_seen__lt=timezone.now() - stale_after())

    def fresh(self) -> NodeQuerySet:
        """Nodes heard from within ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.filter(last_seen__gte=timezone.now() - stale_after())
