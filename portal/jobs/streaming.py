"""Live job frames through the Channels layer.

The runner coalesces replies into frames (one every flush interval, not one per reply), so a
job over thousands of nodes sends tens of messages, not thousands, through the layer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from agents.protocol import BrokerUnavailable
from portal.jobs.models import Job, NodeReply
from portal.jobs.services import job_summary

logger = logging.getLogger(__name__)

FRAME_TYPE = "job.frame"


def job_frame(job: Job, replies: Sequence[NodeReply]) -> dict[str, Any]:
    """One message for the job's group: the job's state now and the replies new since the last."""
    return {
        "type": FRAME_TYPE,
        "job": job_summary(job),
        "replies": [reply.as_dict() for reply in replies],
    }


def push_job_frame(job: Job, replies: Sequence[NodeReply] = ()) -> None:
    """Send a frame to everyone watching the job; a layer failure never fails the job.

    The database is the record: a watcher that misses a frame gets the full state from the
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
