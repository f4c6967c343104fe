"""Four-eyes approval: a job whose grant asks for a second person waits here.

A waiting job has status ``pending_approval`` and an ``rbac.Approval`` row. An approver (a right
given per role, ``portal.rbac.policy.may_approve``) who is not the requester approves it, which
queues it, or rejects it with a comment; an approval not given before ``expires_at`` expires.
Nothing is sent to any node before approval, and a rejected or expired job never sends
anything. Every step is recorded in the audit history and pushed to the job's live page.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit.kinds import Kind
from portal.audit.services import record_event
from portal.jobs import lifecycle
from portal.jobs.models import Approval, Job
from portal.jobs.plans import current_permit
from portal.jobs.streaming import push_job_frame
from portal.rbac.policy import CANCEL_REFUSED, may_approve, may_cancel

logger = logging.getLogger(__name__)


class ApprovalError(Exception):
    """An approval step that cannot be taken, with the reason for the approver."""


class ApprovalForbidden(ApprovalError):
    """The user may not decide on this job (not an approver, or the requester)."""


def request_approval(job: Job, reason: str) -> Approval:
    """Park a just-created job until someone approves it (inside the submit transaction)."""
    approval = Approval.objects.create(
        job=job,
        expires_at=timezone.now() + timedelta(seconds=settings.SWITCHBOARD_APPROVAL_TTL),
        reason=reason,
    )
    record_event(
        Kind.APPROVAL_REQUESTED,
        actor=job.created_by,
        agent=job.agent,
        action=job.action,
        job_id=job.pk,
        summary=f"job {job.pk} waits for approval: {reason}",
        data={"reason": reason, "expires_at": approval.expires_at.isoformat()},
    )
    return approval


def approve(job: Job, user: User, comment: str = "", request: HttpRequest | None = None) -> Job:
    """Approve and queue the job; ``ApprovalError`` (or ``ApprovalForbidden``) saying why not."""
    _expire_if_overdue(job)
    with transaction.atomic():
        approval = _pending(job, user)
        # The requester's grant is checked again: one revoked while the job waited stops it.
        permit = current_permit(job)
        if not permit.allowed:
            raise ApprovalError(f"the requester may no longer run this: {permit.reason}")
        _decide(approval, user, Approval.State.APPROVED, comment)
        lifecycle.approved(job)
        _record(job, Kind.APPROVAL_APPROVED, user, comment, request)
    _push(job)
    return job


def reject(job: Job, user: User, comment: str, request: HttpRequest | None = None) -> Job:
    """Reject the job with a comment: it ends as rejected and never sends anything."""
    if not comment.strip():
        raise ApprovalError("say why the job is rejected")
    _expire_if_overdue(job)
    with transaction.atomic():
        approval = _pending(job, user)
        _decide(approval, user, Approval.State.REJECTED, comment)
        _record(job, Kind.APPROVAL_REJECTED, user, comment, request)
        lifecycle.end_before_running(
            job, Job.Status.REJECTED, f"rejected by {user.get_username()}: {comment}"
        )
    _push(job)
    return job


def withdraw(job: Job, user: User, request: HttpRequest | None = None) -> Job | None:
    """Take back a job waiting for approval: it ends as withdrawn, never sends anything, and
    leaves the approvers' queue. ``None`` when it no longer waits (decided or expired
    meanwhile); ``ApprovalForbidden`` for anyone ``policy.may_cancel`` does not allow (the
    requester, or a role's right to cancel any job). Recorded as ``job.withdrawn``."""
    if not may_cancel(user, job):
        raise ApprovalForbidden(CANCEL_REFUSED)
    _expire_if_overdue(job)
    with transaction.atomic():
        approval = Approval.objects.select_for_update().filter(job=job).first()
        if approval is None or approval.state != Approval.State.PENDING:
            return None
        approval.state = Approval.State.WITHDRAWN
        approval.decided_by = user
        approval.decided_at = timezone.now()
        approval.save(update_fields=["state", "decided_by", "decided_at"])
        record_event(
            Kind.JOB_WITHDRAWN,
            actor=user,
            request=request,
            agent=job.agent,
            action=job.action,
            job_id=job.pk,
            outcome="withdrawn",
            summary=f"job {job.pk} withdrawn by {user.get_username()} before approval",
            data={"requester": job.created_by.get_username()},
        )
        lifecycle.end_before_running(
            job,
            Job.Status.WITHDRAWN,
            f"withdrawn by {user.get_username()} before approval",
            cancelled_by=user,
        )
    _push(job)
    return job


def expire_overdue() -> list[int]:
    """End every job whose approval was not given in time; returns their ids."""
    overdue = Approval.objects.filter(
        state=Approval.State.PENDING, expires_at__lt=timezone.now()
    ).values_list("job_id", flat=True)
    return [job_id for job_id in list(overdue) if _expire_if_overdue(job_id)]


def _expire_if_overdue(job: Job | int) -> bool:
    """Expire the job's approval if its time is up, in a transaction of its own (so an
    approver's refused attempt still leaves the job expired)."""
    job_id = job if isinstance(job, int) else job.pk
    with transaction.atomic():
        approval = (
            Approval.objects.select_for_update()
            .select_related("job")
            .filter(job_id=job_id, state=Approval.State.PENDING, expires_at__lt=timezone.now())
            .first()
        )
        if approval is None:
            return False
        _expire(approval)
    _push(approval.job)
    if not isinstance(job, int):
        job.refresh_from_db()
    return True


def _pending(job: Job, user: User) -> Approval:
    approval = Approval.objects.select_for_update().filter(job=job).first()
    if approval is None:
        raise ApprovalError(f"job {job.pk} does not need approval")
    verdict = may_approve(user, job)
    if not verdict:
        raise ApprovalForbidden(verdict.reason)
    if approval.state != Approval.State.PENDING:
        raise ApprovalError(f"job {job.pk} was already {approval.state}")
    return approval


def _expire(approval: Approval) -> None:
    approval.state = Approval.State.EXPIRED
    approval.decided_at = timezone.now()
    approval.save(update_fields=["state", "decided_at"])
    job = approval.job
    record_event(
        Kind.APPROVAL_EXPIRED,
        agent=job.agent,
        action=job.action,
        job_id=job.pk,
        outcome="expired",
        summary=f"job {job.pk}: approval expired at {approval.expires_at.isoformat()}",
    )
    lifecycle.end_before_running(
        job, Job.Status.EXPIRED, "no approver decided before the approval expired"
    )


def _decide(approval: Approval, user: User, state: str, comment: str) -> None:
    approval.state = state
    approval.decided_by = user
    approval.decided_at = timezone.now()
    approval.comment = comment.strip()
    approval.save(update_fields=["state", "decided_by", "decided_at", "comment"])
    logger.info("job %s %s by %s", approval.job_id, state, user)


def _record(job: Job, kind: str, user: User, comment: str, request: HttpRequest | None) -> None:
    record_event(
        kind,
        actor=user,
        request=request,
        agent=job.agent,
        action=job.action,
        job_id=job.pk,
        outcome=kind.rsplit(".", 1)[1],
        summary=f"job {job.pk} {kind.rsplit('.', 1)[1]} by {user.get_username()}",
        data={"comment": comment, "requester": job.created_by.get_username()},
    )


def _push(job: Job) -> None:
    transaction.on_commit(lambda: push_job_frame(job))
