"""Jobs and the replies their nodes sent back."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from portal.jobs.querysets import JobQuerySet


class Job(models.Model):
    """One agent action sent to every node a filter matches.

    Its status moves only through ``portal.jobs.lifecycle``, which holds the states and the
    transitions between them. Counters are kept on the row so pages never count replies.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        CANCELLED = "cancelled"
        # Its requester (or someone who may cancel it) took it back while it waited for approval.
        WITHDRAWN = "withdrawn"
        # Four-eyes: waiting for a second person, then refused or never decided in time.
        PENDING_APPROVAL = "pending_approval"
        REJECTED = "rejected"
        EXPIRED = "expired"

    class Source(models.TextChoices):
        WEB = "web"
        API = "api"
        CLI = "cli"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs"
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    agent = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    inputs = models.JSONField(default=dict)
    filter_text = models.TextField(blank=True, help_text="The filter as the operator typed it.")
    typed_filter = models.JSONField(
        default=dict, help_text="The operator's filter, parsed, before any scope was ANDed."
    )
    filter = models.JSONField(
        default=dict, help_text="The filter sent to the nodes: as typed, AND the grant's scope."
    )
    scope = models.TextField(blank=True, help_text="The grant scope ANDed to the typed filter.")
    reason = models.TextField(blank=True, help_text="The reason or ticket the operator gave.")
    # The requester's roles when the job was submitted: who else may read it, and what the
    # nodes' policy files see.
    roles = models.ManyToManyField("auth.Group", blank=True, related_name="jobs")
    collective = models.CharField(max_length=64)
    requestid = models.CharField(max_length=32, blank=True)
    timeout = models.FloatField(help_text="Seconds to wait for replies after sending.")
    discovery_method = models.CharField(max_length=16, default="broadcast")
    options = models.JSONField(default=dict, help_text="ExecutionOptions: batches, limit, ttl.")
    cancel_requested = models.BooleanField(default=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs_cancelled",
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Who runs the job ("host:pid") and when it last showed life: a job whose runner died is
    # found by these and marked interrupted, keeping its replies.
    runner = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Where the nodes send their replies, and the request the current batch was sent as: what
    # a worker needs to take over the job of a runner that died and store the replies still
    # waiting in that queue (``runner.salvage_job``).
    reply_to = models.CharField(max_length=255, blank=True)
    current_requestid = models.CharField(max_length=32, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)

    discovered = models.JSONField(default=list, help_text="Identities found by discovery.")
    no_response = models.JSONField(default=list)
    discovered_count = models.PositiveIntegerField(default=0)
    replied_count = models.PositiveIntegerField(default=0)
    ok_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    # Replies refused and not stored: a signature that does not match the node's registered
    # key, a second reply from the same node.
    dropped_count = models.PositiveIntegerField(default=0)
    targeted = models.JSONField(
        default=list, help_text="Identities chosen to receive the request, in the order sent."
    )
    # Batches: how many there are, how many were published, and how many of ``targeted`` (a
    # prefix, in order) were sent the request. ``not_sent`` is the rest once the job ended
    # early (cancelled, refused mid-way, interrupted); ``no_response`` grows as each batch's
    # wait ends, so a node still inside its wait is "waiting", never "no response".
    batch_count = models.PositiveIntegerField(default=0)
    batches_sent = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    not_sent = models.JSONField(default=list)
    waiting_until = models.DateTimeField(
        null=True, blank=True, help_text="When the wait for the current batch's replies ends."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    discovered_at = models.DateTimeField(null=True, blank=True)
    first_reply_at = models.DateTimeField(null=True, blank=True)
    last_reply_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # The jobs list reads newest first by id under each filter (``portal.jobs.listing``):
        # a (column, -id) index lets it stop after one page instead of sorting every match.
        indexes = [
            models.Index(fields=["status", "-id"], name="jobs_job_status_id_idx"),
            models.Index(fields=["agent", "-id"], name="jobs_job_agent_id_idx"),
            models.Index(fields=["action", "-id"], name="jobs_job_action_id_idx"),
            models.Index(fields=["created_by", "-id"]),
            models.Index(fields=["created_at"], name="jobs_job_created_at_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk}: {self.agent}.{self.action}"

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED_STATES

    @property
    def no_response_count(self) -> int:
        return len(self.no_response)

    @property
    def group_name(self) -> str:
        """The Channels group that carries this job's live frames."""
        return f"job.{self.pk}"


# The states a job can still leave; every other state is final (``portal.jobs.lifecycle``
# holds the transitions).
UNFINISHED_STATES = frozenset({Job.Status.PENDING_APPROVAL, Job.Status.QUEUED, Job.Status.RUNNING})


class NodeReply(models.Model):
    """One node's reply to a job; at most one per node and job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="replies")
    identity = models.CharField(max_length=255)
    statuscode = models.PositiveSmallIntegerField()
    statusmsg = models.TextField(blank=True)
    data = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    # True when signed by the key the portal trusts for the node (its accepted enrolment).
    # Only such replies are stored now; False remains on replies stored before enrolment.
    verified = models.BooleanField(default=False)

    class Meta:
        ordering = ["identity"]
        constraints = [
            models.UniqueConstraint(fields=["job", "identity"], name="one_reply_per_node")
        ]

    def __str__(self) -> str:
        return f"{self.identity}: {self.statuscode}"

    @property
    def ok(self) -> bool:
        return self.statuscode == 0

    def as_dict(self) -> dict[str, object]:
        """The reply as the API, the CLI and the live stream show it."""
        return {
            "id": self.pk,
            "identity": self.identity,
            "statuscode": self.statuscode,
            "statusmsg": self.statusmsg,
            "data": self.data,
        }


class Approval(models.Model):
    """A job waiting for a second person, and what they decided."""

    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        WITHDRAWN = "withdrawn"

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="approval")
    requested_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    reason = models.TextField(help_text="Why the job needs approval (which grant, how many nodes).")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approvals_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"], name="jobs_approval_state_idx")]

    def __str__(self) -> str:
        return f"approval of job {self.job_id}: {self.state}"
