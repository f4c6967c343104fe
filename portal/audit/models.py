"""The audit history: append-only events, each chained to the one before by its hash."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from portal.audit.querysets import AuditEventQuerySet


class AuditEvent(models.Model):
    """One thing that happened: who, from where, what, to which nodes, with what result.

    Written only by ``portal.audit.services.record_event`` and never changed: on PostgreSQL a
    trigger refuses UPDATE and DELETE (``migrations/0002_postgresql.py``) except the pruning
    of old events by ``prune_events``. ``hash`` is sha256 over the event's fields and
    ``prev_hash``, the hash of the event before it, so ``verify_audit`` finds any change.
    """

    at = models.DateTimeField(help_text="When it happened; never earlier than the event before.")
    kind = models.CharField(max_length=64, help_text='What happened, e.g. "job.submitted".')
    actor = models.CharField(
        max_length=150, blank=True, help_text="Username as it was (empty: the system)."
    )
    # Not hashed: a deleted account nulls it (the trigger allows exactly that), the username
    # above stays.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    roles = models.JSONField(default=list, help_text="The actor's roles at the time.")
    source_ip = models.CharField(max_length=45, blank=True)
    agent = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    # Not a foreign key: deleting or pruning jobs never touches the audit history.
    job_id = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, blank=True)
    summary = models.TextField(blank=True)
    data = models.JSONField(default=dict, help_text="Inputs, filters, before/after, reason...")
    nodes = models.JSONField(default=list, help_text="Identities of the nodes concerned.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Keyset paging is on id; each filter has an index ending in id so that
            # "filter, id < cursor, newest first, 51 rows" reads 51 index entries.
            models.Index(fields=["at", "id"], name="audit_at_id"),
            models.Index(fields=["kind", "id"], name="audit_kind_id"),
            models.Index(fields=["actor", "id"], name="audit_actor_id"),
            models.Index(fields=["agent", "id"], name="audit_agent_id"),
            models.Index(fields=["agent", "action", "id"], name="audit_agent_action_id"),
            models.Index(fields=["outcome", "id"], name="audit_outcome_id"),
            models.Index(fields=["job_id", "id"], name="audit_job_id"),
        ]
        constraints = [
            # One successor per event: a fork in the chain (two writers reading the same
            # head) fails the INSERT instead of going unnoticed.
            models.UniqueConstraint(fields=["prev_hash"], name="audit_one_successor"),
        ]

    def __str__(self) -> str:
        return f"audit event {self.pk}: {self.kind}"


class RefusalWindow(models.Model):
    """The flood guard's state for one repeated refusal (same who, what and where).

    Not part of the history and not hashed: ``portal.audit.refusals`` writes at most one event
    per key per window and counts the repeats here, to write them with the key's next event.
    """

    # sha256 (hex) of the kind and what identifies the refusal: a fixed width, whatever the path.
    key = models.CharField(max_length=64, unique=True)
    opened_at = models.DateTimeField(help_text="When the key's last event was written.")
    repeats = models.PositiveIntegerField(
        default=0, help_text="Refusals since that event, not written one by one."
    )
    event_id = models.BigIntegerField(null=True, blank=True, help_text="That event's id.")

    class Meta:
        indexes = [models.Index(fields=["opened_at"], name="audit_refusal_opened")]

    def __str__(self) -> str:
        return f"refusal window {self.key[:12]}: {self.repeats} repeats since {self.opened_at}"
