"""The one shape of a job as people see it: the API, the ``rpc`` command, the page and the
live stream all show what these functions return, so a count means the same everywhere."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from portal.jobs.models import Job
from portal.jobs.summaries import summarize


def job_counts(job: Job) -> dict[str, int]:
    """Where each targeted node stands, counted from the job's row (no query).

    ``expected`` (targeted) = ``ok`` + ``failed`` + ``waiting`` + ``no_response`` +
    ``not_sent``. A node is *waiting* while the wait for its batch runs; *no response* only
    once that wait ended without its reply; *not sent* when its batch was never published
    (a later batch of a running job, or one the job ended before).
    """
    expected = job.discovered_count
    if job.is_finished:
        not_sent = len(job.not_sent)
        no_response = len(job.no_response)
        waiting = 0
    else:
        not_sent = max(expected - job.sent_count, 0)
        no_response = len(job.no_response)
        waiting = max(job.sent_count - job.replied_count - no_response, 0)
    return {
        "expected": expected,
        "replied": job.replied_count,
        "ok": job.ok_count,
        "failed": job.failed_count,
        "waiting": waiting,
        "no_response": no_response,
        "not_sent": not_sent,
    }


def job_progress(job: Job) -> dict[str, Any]:
    """Batches and the current wait, for the page's countdown."""
    waiting_until = job.waiting_until if not job.is_finished else None
    return {
        "batches": job.batch_count,
        "batches_sent": job.batches_sent,
        "sent": job.sent_count,
        "waiting_until": waiting_until.isoformat() if waiting_until else None,
        "now": timezone.now().isoformat(),
    }


def job_summary(job: Job) -> dict[str, Any]:
    """The job without its replies, as the API, the CLI and the live stream show it."""
    return {
        "id": job.pk,
        "agent": job.agent,
        "action": job.action,
        "inputs": job.inputs,
        "filter": job.filter_text,
        "scope": job.scope,
        "reason": job.reason,
        "requester": job.created_by.get_username(),
        "status": job.status,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "cancelled_by": job.cancelled_by.get_username() if job.cancelled_by is not None else None,
        "cancelled_at": job.cancelled_at.isoformat() if job.cancelled_at else None,
        "discovery_method": job.discovery_method,
        "options": job.options,
        "dropped": job.dropped_count,
        "finished": job.is_finished,
        "discovered": job.discovered_count,
        "counts": job_counts(job),
        "progress": job_progress(job),
        "no_response": job.no_response,
        "not_sent": job.not_sent,
        "approval": approval_state(job),
        "created_at": job.created_at.isoformat(),  # set when the job is stored
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def approval_state(job: Job) -> dict[str, Any] | None:
    """The job's four-eyes approval as the requester's page shows it, ``None`` without one."""
    # The reverse one-to-one raises an AttributeError subclass when there is no row.
    approval = getattr(job, "approval", None)
    if approval is None:
        return None
    return {
        "state": approval.state,
        "reason": approval.reason,
        "expires_at": approval.expires_at.isoformat(),
        "decided_by": approval.decided_by.get_username() if approval.decided_by_id else None,
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "comment": approval.comment,
    }


def job_snapshot(job: Job) -> dict[str, Any]:
    """The job with every reply stored so far."""
    summary = job_summary(job)
    summary["replies"] = [reply.as_dict() for reply in job.replies.all()]
    return summary


def job_state(job: Job) -> dict[str, Any]:
    """The job without its replies; once finished, with its DDL summaries too."""
    state = job_summary(job)
    if job.is_finished:
        state["summaries"] = summarize(job)
    return state
