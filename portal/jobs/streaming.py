"""Live job frames through the Channels layer.

The runner coalesces replies into frames (one every flush interval, not one per reply), so a
job over thousands of nodes sends tens of messages, not thousands, through the layer.

Every reply carries its row id, and a frame its ``seq``: the highest reply id in it. Reply ids
of one job grow in the order their flushes commit (one runner writes a job's replies, one
flush after another), so a watcher that has everything up to ``seq`` resumes with the replies
whose id is greater (``JobConsumer``, ``?after=<seq>``) and misses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from agents.protocol import BrokerUnavailable
from portal.jobs.models import Job, NodeReply
from portal.jobs.presenters import job_state

logger = logging.getLogger(__name__)

FRAME_TYPE = "job.frame"
SNAPSHOT_TYPE = "job.snapshot"


def job_frame(job: Job, replies: Sequence[NodeReply]) -> dict[str, Any]:
    """One message for the job's group: the job's state now and the replies new since the last.

    ``seq`` is the highest reply id in the frame, ``None`` for a frame without replies (the
    consumer fills in the last one it sent).
    """
    _fill_ids(job, replies)
    return {
        "type": FRAME_TYPE,
        "job": job_state(job),
        "replies": [reply.as_dict() for reply in replies],
        "seq": max((reply.pk for reply in replies), default=None),
    }


def push_job_frame(job: Job, replies: Sequence[NodeReply] = ()) -> None:
    """Send a frame to everyone watching the job; a layer failure never fails the job.

    The database is the record: a watcher that misses a frame gets what it missed from the
    snapshot when it reconnects.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job.group_name, job_frame(job, replies))
    except BrokerUnavailable as exc:
        logger.warning("job %s: live frame not pushed: %s", job.pk, exc)
    except Exception:
        logger.exception("could not push a frame for job %s to the channel layer", job.pk)


def _fill_ids(job: Job, replies: Sequence[NodeReply]) -> None:
    """Read the ids of rows ``bulk_create`` left without one (backends that cannot return them).

    PostgreSQL, and SQLite 3.35+, return them from the INSERT: then this costs nothing.
    """
    missing = {reply.identity: reply for reply in replies if reply.pk is None}
    if not missing:
        return
    stored = NodeReply.objects.filter(job=job, identity__in=missing).values_list("identity", "pk")
    for identity, pk in stored:
        missing[identity].pk = pk
