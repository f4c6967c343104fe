"""Runs one job over the broker: discover, publish, collect, store, stream.

Called by the Celery task and by the ``rpc`` command, always after ``submit_job``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from django.conf import settings

from agents.protocol import BrokerUnavailable, Reply
from portal.broker.gateway import BrokerGateway, BrokerSettings
from portal.jobs.models import Job, NodeReply
from portal.jobs.services import finish_job, record_discovery, record_replies, start_job
from portal.jobs.streaming import push_job_frame

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Job, Sequence[NodeReply]], None]


def run_job(job_id: int, on_progress: ProgressCallback | None = None) -> Job | None:
    """Run a queued job to its end; ``None`` if another run already claimed it.

    A broker that cannot be reached, or goes away mid-job, fails the job with the reason
    (keeping the replies already stored) instead of hanging.
    """
    job = start_job(job_id)
    if job is None:
        logger.warning("job %s was already claimed; not sending it again", job_id)
        return None

    def progress(replies: Sequence[NodeReply]) -> None:
        push_job_frame(job, replies)
        if on_progress is not None:
            on_progress(job, replies)

    progress(())
    try:
        with BrokerGateway(BrokerSettings.from_django()) as gateway:
            _discover_and_collect(job, gateway, progress)
    except BrokerUnavailable as exc:
        finish_job(job, Job.Status.FAILED, f"message broker unavailable: {exc}")
    except Exception as exc:
        logger.exception("job %s crashed", job.pk)
        finish_job(job, Job.Status.FAILED, f"internal error: {exc}")
        raise
    finally:
        progress(())
    return job


def _discover_and_collect(
    job: Job, gateway: BrokerGateway, progress: Callable[[Sequence[NodeReply]], None]
) -> None:
    callerid = f"user={job.created_by.get_username()}"
    # The caller's roles travel in the signed request, for the nodes' own policy files.
    roles = sorted(job.created_by.groups.values_list("name", flat=True))
    ttl = settings.SWITCHBOARD_REQUEST_TTL
    discovered = gateway.discover(
        job.filter, callerid, timeout=settings.SWITCHBOARD_DISCOVERY_TIMEOUT, ttl=ttl, roles=roles
    )
    request = gateway.new_request(
        agent=job.agent,
        action=job.action,
        data=job.inputs,
        filter=job.filter,
        callerid=callerid,
        ttl=ttl,
        roles=roles,
    )
    record_discovery(job, discovered, request.requestid)
    if not discovered:
        finish_job(job, Job.Status.COMPLETED, "no node matched the filter")
        return
    progress(())

    gateway.publish(request)
    expected = set(discovered)
    seen: set[str] = set()
    batch: list[Reply] = []
    next_flush = time.monotonic() + settings.SWITCHBOARD_FLUSH_INTERVAL
    for received in gateway.replies(request, time.monotonic() + job.timeout):
        reply = received.reply if received is not None else None
        if reply is not None:
            if reply.senderid in seen:
                logger.warning("job %s: dropped a second reply from %s", job.pk, reply.senderid)
            else:
                seen.add(reply.senderid)
                batch.append(reply)
        done = expected <= seen
        if batch and (done or time.monotonic() >= next_flush):
            progress(record_replies(job, batch))
            batch = []
            next_flush = time.monotonic() + settings.SWITCHBOARD_FLUSH_INTERVAL
        if done:
            break
    if batch:
        progress(record_replies(job, batch))
    finish_job(job, Job.Status.COMPLETED)
