"""Nodes as they last registered themselves."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from portal.inventory.querysets import NodeQuerySet, stale_after


class Node(models.Model):
    """One node's newest registration: identity, facts, classes, agents and public key.

    Written only by ``portal.inventory.services.record_registrations``; staleness is computed
    from ``last_seen``, never stored. A Node is a ``agents.filters.NodeView``, so
    ``Filter.matches(node)`` works on rows as well as on the nodes themselves.
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

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["identity"]

    def __str__(self) -> str:
        return self.identity

    @property
    def is_stale(self) -> bool:
        """True when the node has not registered for ``SWITCHBOARD_NODE_STALE_AFTER`` seconds."""
        return self.last_seen < timezone.now() - stale_after()
