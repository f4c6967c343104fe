"""Nodes as they last registered themselves."""

from __future__ import annotations

from typing import Any

from django.db import connections, models, router
from django.utils import timezone

from portal.inventory.querysets import NodeQuerySet, stale_after, with_search_fields
from portal.inventory.search import search_columns


class Enrolment(models.Model):
    """Whether the portal trusts a node identity, and the one key it trusts for it (Salt's
    accepted/pending/rejected keys, bound to the identity as Choria binds its certificates).

    Written only by ``portal.inventory.services``. A ``Node`` row exists exactly while its
    enrolment is accepted: pending, rejected and revoked identities are never counted,
    previewed, discovered or sent requests, and only an accepted node's replies are kept.
    """

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"
        REVOKED = "revoked", "revoked"

    identity = models.CharField(max_length=253, unique=True)
    state = models.CharField(max_length=8, choices=State.choices, db_index=True)
    public_key = models.TextField(
        help_text="The Ed25519 key (PEM): pinned once accepted, else offered."
    )
    key_id = models.CharField(max_length=16, help_text="The key's id (agents.protocol.security).")
    offered = models.JSONField(
        default=dict,
        blank=True,
        help_text="The newest registration while not accepted.",
    )
    first_seen = models.DateTimeField(help_text="When the identity first registered.")
    last_seen = models.DateTimeField(help_text="When a registration under the key last arrived.")
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(
        max_length=200, blank=True, help_text="How the last decision was made, e.g. the rule."
    )
    conflict_key = models.TextField(
        blank=True, help_text="PEM of the newest other key a registration was signed with."
    )
    conflict_key_id = models.CharField(max_length=16, blank=True)
    conflict_seen = models.DateTimeField(null=True, blank=True)
    conflict_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["identity"]

    def __str__(self) -> str:
        return f"{self.identity} ({self.state})"

    @property
    def has_conflict(self) -> bool:
        """True while registrations under another key than the trusted one are arriving."""
        return bool(self.conflict_key_id)


class RefusedRegistrations(models.Model):
    """How many registrations the consumer refused for one reason, and the last one's detail.

    Written by the registration consumer once per flush (``services.count_refusals``).
    """

    reason = models.CharField(max_length=32, primary_key=True)
    count = models.PositiveBigIntegerField(default=0)
    last_at = models.DateTimeField()
    last_identity = models.CharField(max_length=300, blank=True)
    last_detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["reason"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.count}"


class Node(models.Model):
    """One accepted node's newest registration: identity, facts, classes and agents.

    Its trusted key is its ``Enrolment``'s (same identity).
    Written only by ``portal.inventory.services``; staleness is computed
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
