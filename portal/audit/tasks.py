"""Celery tasks for the audit history: thin wrappers over ``portal.audit.services``."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task
from django.conf import settings

from portal.audit.services import prune_events

logger = logging.getLogger(__name__)

PRUNE_AUDIT_TASK = "portal.audit.prune"


@shared_task(name=PRUNE_AUDIT_TASK, ignore_result=True)
def prune_audit() -> None:
    """Archive and delete the events past ``SWITCHBOARD_AUDIT_RETENTION_DAYS`` (beat, daily).

    The same as ``manage.py prune_audit`` with its defaults; the pruning records itself as an
    ``audit.pruned`` event, so a run that deleted nothing is on the record too. A ``PruneError``
    is left to raise: Celery logs it with the task, and nothing was deleted.
    """
    result = prune_events(
        retention_days=settings.SWITCHBOARD_AUDIT_RETENTION_DAYS,
        archive_dir=Path(settings.SWITCHBOARD_AUDIT_ARCHIVE_DIR),
    )
    logger.info("audit retention: %d events pruned (event %s)", result.deleted, result.event.pk)
