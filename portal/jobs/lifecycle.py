"""A job's states and every change to them, in one place.

::

    pending_approval ──approve──▶ queued ──start──▶ running ──▶ completed | failed
        │ reject / expire / withdraw │ cancel          │ cancel      │
        ▼                            ▼ interrupt       ▼ interrupt   ▼
    rejected | expired | withdrawn  cancelled | interrupted    cancelled | interrupted

Every change is a compare-and-set ``UPDATE ... WHERE status IN (<the states it may come
from>)``: two processes racing (a cancel and the runner finishing, two sweepers) never both
win, and a job never leaves a final state. The runner, the approvals, the web, the API and the
``rpc`` command all change jobs through these functions only.

Per node, a targeted node is *sent* once its batch is published, then *replied* or, once its
batch's wait ends, *no response*; nodes of batches never published are *not sent*.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from agents.protocol import Reply
from portal.audit.kinds import Kind
from portal.audit.services import record_event
from portal.celery import app as celery_app
from portal.jobs.models import UNFINISHED_STATES, Job, NodeReply
from portal.jobs.presenters import job_counts
from portal.jobs.streaming import push_job_frame

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "jobs.run_job"
SALVAGE_JOB_TASK = "jobs.salvage_job"

Status = Job.Status
# Where each state may be reached from.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.PENDING_APPROVAL}),
    Status.RUNNING: frozenset({Status.QUEUED}),
    Status.COMPLETED: frozenset({Status.RUNNING}),
    Status.FAILED: frozenset({Status.RUNNING, Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.RUNNING, Status.QUEUED}),
    Status.INTERRUPTED: frozenset({Status.RUNNING, Status.QUEUED}),
    Status.REJECTED: frozenset({Status.PENDING_APPROVAL}),
    Status.EXPIRED: frozenset({Status.PENDING_APPROVAL}),
    Status.WITHDRAWN: frozenset({Status.PENDING_APPROVAL}),
}
FINAL_STATES = frozenset(set(Status) - UNFINISHED_STATES)


def _move(job: Job, to: str, **fields: Any) -> bool:
    """Compare-and-set the job to ``to`` from a state it may come from; False if it was not
    in one (another process moved it first). ``job`` is refreshed either way."""
    moved = Job.objects.filter(pk=job.pk, status__in=TRANSITIONS[to]).update(status=to, **fields)
    job.refresh_from_db()
    return bool(moved)


# -- from submission to a worker ---------------------------------------------------------------


def dispatch(job: Job) -> None:
    """Queue the job for a worker once the current transaction commits."""
    # By name: the task module imports this one.
    transaction.on_commit(lambda: celery_app.send_task(RUN_JOB_TASK, args=[job.pk]))


def approved(job: Job) -> bool:
    """A job waiting for approval got it: queue it (inside the approval's transaction)."""
    if not _move(job, Status.QUEUED):
        return False
    dispatch(job)
    return True


def start(job_id: int) -> Job | None:
    """Claim a queued job for running; ``None`` if it was already claimed.

    RPC over a broker is at-most-once: a task re-delivered after a worker crash must not
    publish the request again, so only the first claim of a queued job succeeds.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status__in=TRANSITIONS[Status.RUNNING]).update(
        status=Status.RUNNING, started_at=now, runner=this_runner(), heartbeat_at=now
    )
    if not claimed:
        return None
    return Job.objects.get(pk=job_id)


def narrow_to_scope(job: Job, effective_filter: dict[str, Any], scope_text: str) -> None:
    """The grant's scope changed while the job waited: send it to the narrower target."""
    job.filter = effective_filter
    job.scope = " and ".join(f"({s})" for s in (job.scope, scope_text) if s)
    job.save(update_fields=["filter", "scope"])


# -- while it runs -------------------------------------------------------------------------------


def record_discovery(
    job: Job, discovered: Iterable[str], targeted: Sequence[str], batch_count: int = 1
) -> None:
    """Store who discovery found and who the request goes to (fewer with a limit), in the
    order the batches send it."""
    job.discovered = sorted(discovered)
    job.targeted = list(targeted)
    # "expected" is who the request is sent to: the limited choice, not all discovered.
    job.discovered_count = len(job.targeted)
    job.batch_count = batch_count if job.targeted else 0
    job.discovered_at = timezone.now()
    job.save(
        update_fields=["discovered", "targeted", "discovered_count", "batch_count", "discovered_at"]
    )


def record_batch_sent(
    job: Job, requestid: str, size: int, wait: float, reply_to: str = ""
) -> datetime:
    """A batch of ``size`` nodes was published as ``requestid``, answers going to ``reply_to``;
    its wait for replies ends ``wait`` s later.

    Returns that deadline. The first request id is kept for tracing on the nodes' logs; the
    current one and the reply queue let another worker take the job over if this runner dies.
    """
    waiting_until = timezone.now() + timedelta(seconds=wait)
    Job.objects.filter(pk=job.pk).update(
        batches_sent=F("batches_sent") + 1,
        sent_count=F("sent_count") + size,
        waiting_until=waiting_until,
        current_requestid=requestid,
        reply_to=reply_to,
    )
    Job.objects.filter(pk=job.pk, requestid="").update(requestid=requestid)
    job.refresh_from_db(
        fields=[
            "batches_sent",
            "sent_count",
            "waiting_until",
            "requestid",
            "current_requestid",
            "reply_to",
        ]
    )
    return waiting_until


def settle_batch(job: Job, silent: Collection[str]) -> None:
    """The wait for a batch ended: its nodes that did not answer are *no response* now."""
    job.refresh_from_db(fields=["no_response"])
    job.no_response = job.no_response + sorted(silent)
    job.waiting_until = None
    job.save(update_fields=["no_response", "waiting_until"])


def record_dropped(job: Job, count: int) -> None:
    """Count replies refused and not stored (bad signature, a node answering twice)."""
    if count:
        Job.objects.filter(pk=job.pk).update(dropped_count=F("dropped_count") + count)
        job.refresh_from_db(fields=["dropped_count"])


def record_replies(
    job: Job, replies: Sequence[Reply], verified: Collection[str] = ()
) -> list[NodeReply]:
    """Store a batch of replies with one INSERT and one UPDATE of the counters.

    Returns the rows stored. A node that already has a reply for this job (a node answering
    twice) is dropped and logged, never stored or counted twice.
    """
    if not replies:
        return []
    now = timezone.now()
    with transaction.atomic():
        identities = [reply.senderid for reply in replies]
        known = set(
            NodeReply.objects.filter(job=job, identity__in=identities).values_list(
                "identity", flat=True
            )
        )
        rows: dict[str, NodeReply] = {}
        for reply in replies:
            if reply.senderid in known or reply.senderid in rows:
                logger.warning("job %s: dropped a repeated reply from %s", job.pk, reply.senderid)
                continue
            rows[reply.senderid] = NodeReply(
                job=job,
                identity=reply.senderid,
                statuscode=reply.statuscode,
                statusmsg=reply.statusmsg,
                data=reply.data,
                received_at=now,
                verified=reply.senderid in verified,
            )
        if not rows:
            return []
        NodeReply.objects.bulk_create(rows.values())
        ok = sum(1 for row in rows.values() if row.ok)
        Job.objects.filter(pk=job.pk).update(
            replied_count=F("replied_count") + len(rows),
            ok_count=F("ok_count") + ok,
            failed_count=F("failed_count") + len(rows) - ok,
            last_reply_at=now,
        )
        Job.objects.filter(pk=job.pk, first_reply_at__isnull=True).update(first_reply_at=now)
    job.refresh_from_db(
        fields=["replied_count", "ok_count", "failed_count", "first_reply_at", "last_reply_at"]
    )
    return list(rows.values())


def beat(job: Job) -> None:
    """Show that the job's runner is alive (one UPDATE; callers do it every few seconds)."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())


def cancel_requested(job: Job) -> bool:
    """True once someone asked the running job to stop (one indexed query)."""
    return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


# -- stopping ------------------------------------------------------------------------------------


def cancel(job: Job, user: User, request: HttpRequest | None = None) -> Job:
    """Ask a queued or running job to stop, recorded as ``job.cancel_requested``.

    A queued job is cancelled at once, before anything is sent. A running one stops sending
    batches and waiting at its next check (within a second), keeping its replies; its runner
    ends it as cancelled, saying by whom and where it was. A cancel of a finished job (or one
    already asked to stop) changes nothing and records nothing. The caller checks
    ``policy.may_cancel``; jobs waiting for approval are withdrawn instead
    (``approvals.withdraw``).
    """
    now = timezone.now()
    with transaction.atomic():
        asked_in = job.status
        # Only a queued job ends at once; a running one is asked, and its runner ends it.
        before_start = bool(
            Job.objects.filter(pk=job.pk, status=Status.QUEUED).update(
                status=Status.CANCELLED,
                cancel_requested=True,
                cancelled_by=user,
                cancelled_at=now,
                finished_at=now,
            )
        )
        if not before_start:
            asked = Job.objects.filter(
                pk=job.pk, status=Status.RUNNING, cancel_requested=False
            ).update(cancel_requested=True, cancelled_by=user, cancelled_at=now)
            if not asked:
                job.refresh_from_db()
                return job
        record_event(
            Kind.JOB_CANCEL_REQUESTED,
            actor=user,
            request=request,
            agent=job.agent,
            action=job.action,
            job_id=job.pk,
            outcome="cancelled" if before_start else "requested",
            summary=f"cancel of job {job.pk} "
            + ("before it started" if before_start else "requested while it ran"),
            data={"status": asked_in},
        )
        if before_start:
            job.refresh_from_db()
            _close(job, f"cancelled by {user.get_username()} before it started")
    logger.info("job %s: cancel requested by %s", job.pk, user)
    job.refresh_from_db()
    return job


def cancelled_while_running(job: Job) -> Job:
    """The runner saw the cancel request: end the job saying who stopped it and where."""
    job.refresh_from_db()
    who = job.cancelled_by.get_username() if job.cancelled_by is not None else "someone"
    if job.batches_sent == 0:
        where = "before anything was sent"
    elif job.waiting_until is not None:
        where = f"while waiting for the replies to batch {job.batches_sent} of {job.batch_count}"
    else:
        where = f"after batch {job.batches_sent} of {job.batch_count}"
    return finish(job, Status.CANCELLED, f"cancelled by {who} {where}")


def finish(job: Job, status: str, error: str = "") -> Job:
    """End a queued or running job with ``status`` and, if any, why it failed.

    Every sent node without a reply is *no response*, every targeted node never sent
    *not sent*. If another process ended the job first, nothing changes.
    """
    if not _move(job, status, finished_at=timezone.now(), waiting_until=None, error=error):
        logger.info("job %s already ended (%s); not marking it %s", job.pk, job.status, status)
        return job
    return _close(job, error)


def end_before_running(job: Job, status: str, error: str, cancelled_by: User | None = None) -> Job:
    """End a job waiting for approval (rejected, expired, withdrawn by ``cancelled_by``):
    nothing was sent."""
    now = timezone.now()
    taken_back = {"cancelled_by": cancelled_by, "cancelled_at": now} if cancelled_by else {}
    if not _move(job, status, finished_at=now, error=error, **taken_back):
        logger.info(
            "job %s already left approval (%s); not marking it %s", job.pk, job.status, status
        )
        return job
    return _close(job, error)


def _close(job: Job, error: str) -> Job:
    """Settle who answered and who was never sent, and record the end."""
    sent = job.targeted[: job.sent_count]
    replied = set(job.replies.values_list("identity", flat=True))
    job.no_response = [identity for identity in sent if identity not in replied]
    job.not_sent = job.targeted[job.sent_count :]
    job.error = error
    if job.finished_at is None:
        job.finished_at = timezone.now()
    job.save(update_fields=["no_response", "not_sent", "error", "finished_at"])
    counts = job_counts(job)
    record_event(
        Kind.JOB_FINISHED,
        actor=job.created_by,
        agent=job.agent,
        action=job.action,
        job_id=job.pk,
        outcome=job.status,
        nodes=job.targeted,
        summary=f"{job.agent} {job.action}: {job.status}" + (f" ({error})" if error else ""),
        data={
            "counts": counts,
            "error": error,
            "batches": {"planned": job.batch_count, "sent": job.batches_sent},
            "cancelled_by": (
                job.cancelled_by.get_username() if job.cancelled_by is not None else None
            ),
            "duration": (
                (job.finished_at - job.started_at).total_seconds() if job.started_at else None
            ),
        },
    )
    logger.info("job %s %s: %s", job.pk, job.status, error or counts)
    return job


# -- runners that went away ----------------------------------------------------------------------


def this_runner() -> str:
    """This process, as a job's ``runner``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Orphans:
    """What one sweep did with the running jobs whose runner is gone."""

    interrupted: list[int] = field(default_factory=list)  # ended at once: nothing to wait for
    taken_over: list[int] = field(default_factory=list)  # replies may wait: salvage them


def interrupt_orphaned_jobs(stale_after: float) -> Orphans:
    """Find running jobs whose runner is gone; end them interrupted, or take them over.

    A runner on this host whose process no longer exists is gone at once; any runner is gone
    once its heartbeat is older than ``stale_after`` seconds. Replies already stored stay.
    A job with sent nodes that have not answered yet may have replies waiting in its reply
    queue (the broker keeps unacknowledged ones): it is taken over by this process (its
    ``runner`` compare-and-set) and queued for ``SALVAGE_JOB_TASK``, which stores them and
    then ends it. Any other is ended at once.
    """
    host = socket.gethostname()
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    orphans = Orphans()
    for job in Job.objects.filter(status=Status.RUNNING):
        runner_host, _, pid = job.runner.rpartition(":")
        dead_here = runner_host == host and pid.isdigit() and not _process_alive(int(pid))
        silent = job.heartbeat_at is None or job.heartbeat_at < cutoff
        if not (dead_here or silent):
            continue
        why = "its process ended" if dead_here else f"no heartbeat for {stale_after:g} s"
        stopped = f"the runner {job.runner} stopped ({why})"
        if _may_have_replies_waiting(job):
            if take_over(job, job.runner, stopped):
                orphans.taken_over.append(job.pk)
                celery_app.send_task(SALVAGE_JOB_TASK, args=[job.pk, stopped, job.runner])
            continue
        finish(job, Status.INTERRUPTED, f"interrupted: {stopped}")
        # Nobody else will tell the pages watching it: their runner is gone.
        push_job_frame(job)
        orphans.interrupted.append(job.pk)
    return orphans


def _may_have_replies_waiting(job: Job) -> bool:
    """Sent nodes have neither answered nor been settled as silent, and their queue is known."""
    unsettled = job.sent_count - job.replied_count - len(job.no_response)
    return bool(job.reply_to and job.current_requestid and unsettled > 0)


def take_over(job: Job, runner: str, stopped: str) -> bool:
    """Make this process the running job's runner, if its runner is still ``runner``.

    Compare-and-set on ``runner``: of two sweepers, or two deliveries of one salvage task,
    only one takes it. The heartbeat starts again, so a taker that dies in turn is found the
    same way. Logged with why the runner before was given up (``stopped``).
    """
    taken = Job.objects.filter(pk=job.pk, status=Status.RUNNING, runner=runner).update(
        runner=this_runner(), heartbeat_at=timezone.now()
    )
    if taken:
        logger.warning("job %s: taken over by %s: %s", job.pk, this_runner(), stopped)
    job.refresh_from_db()
    return bool(taken)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupt_unfinished_jobs(reason: str) -> int:
    """Mark every queued or running job interrupted, keeping the replies it already has.

    Called when the process that would finish them is gone (a worker or demo restart).
    """
    jobs = list(Job.objects.unfinished())
    for job in jobs:
        finish(job, Status.INTERRUPTED, reason)
        push_job_frame(job)
    return len(jobs)
