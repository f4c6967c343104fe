"""Nodes as they last registered themselves."""

from __future__ import annotations

from typing import Any

from django.db import connections, models, router
from django.utils import timezone

from portal.inventory.querysets import NodeQuerySet, stale_after, with_search_fields
from portal.inventory.search import search_columns


class Node(models.Model):
    """One node's newest registration: identity, facts, classes, agents and public key.

    Written only by ``portal.inventory.services.record_registrations``; staleness is computed
    from ``last_seen``, never stored. A Node is a ``agents.filters.NodeView``, so
    ``Filter.matches(node)`` works on rows as well as on the nodes themselves.
    The search columns (``fact_text``, ``fact_number``, ``fact_lists``) are derived from
    ``facts`` on every save and bulk write (``search``); the PostgreSQL filters read them.
    """

    identity = models.CharField(max_length=255, unique=True)
    collectives = models.JSONField(default=list)
    facts = models.JSONField(default=dict)
    classes = models.JSONField(default=list)
    agents = models.JSONField(default=list)
    public_key = models.TextField(blank=True, help_text="PEM of the node's Ed25519 key, if any.")
    first_seen = models.DateTimeField(help_text="When the portal first recorded this node.")
    last_seen = models.DateTimeField(db_index=True, help_text="When the portal last heard of it.")
    registered_at = models.DateTimeField(help_text="The newest registration's own msgtime.")
    fact_text = models.JSONField(
        default=dict, editable=False, help_text="Each scalar fact's text as filters read it."
    )
    fact_number = models.JSONField(
        default=dict, editable=False, help_text="Each scalar fact's number, if it reads as one."
    )
    fact_lists = models.JSONField(
        default=dict, editable=False, help_text="Each list fact's elements as filters read them."
    )

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["identity"]

    def __str__(self) -> str:
        return self.identity

    def save(self, *args: Any, **kwargs: Any) -> None:
        """``Model.save``, with the search columns computed from ``facts`` first."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "facts" in update_fields:
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            self.fill_search_columns(connections[using].vendor)
            if update_fields is not None:
                kwargs["update_fields"] = with_search_fields(update_fields)
        super().save(*args, **kwargs)

    def fill_search_columns(self, vendor: str) -> None:
        """Set the search columns from ``facts`` as ``vendor`` stores them."""
        for name, value in search_columns(self.facts, vendor).items():
            setattr(self, name, value)

    @property
    def is_stale(self) -> bool:
        """True when the node has not registered for ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.last_seen < timezone.now() - stale_after()
