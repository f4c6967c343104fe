"""Celery tasks for jobs: thin wrappers that take ids and call one service."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from portal.broker.health import check_brokers
from portal.jobs import runner
from portal.jobs.approvals import expire_overdue
from portal.jobs.lifecycle import RUN_JOB_TASK, SALVAGE_JOB_TASK, interrupt_orphaned_jobs

logger = logging.getLogger(__name__)


@shared_task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: int) -> None:
    """Run a submitted job on the broker network; a second delivery of the task does nothing."""
    runner.run_job(job_id)


@shared_task(name=SALVAGE_JOB_TASK, ignore_result=True)
def salvage_job(job_id: int, stopped: str, taken_by: str) -> None:
    """Store the replies waiting for a job whose runner died, then end it (the sweep queues it)."""
    runner.salvage_job(job_id, stopped, taken_by)


@worker_ready.connect
def watch_for_orphaned_jobs(**_: object) -> None:
    """When a worker starts, and then every so often, close the jobs whose runner died, and
    those whose approval expired; and record which brokers are reachable.

    A worker killed mid-job cannot mark its own job; the next worker to start (or any worker,
    later, from the heartbeat) does, first storing the replies still waiting in its reply
    queue, so a job never stays "running" for ever.
    """

    def sweep_forever() -> None:
        while True:
            try:
                orphans = interrupt_orphaned_jobs(settings.SWITCHBOARD_JOB_STALE_AFTER)
                expired = expire_overdue()
                check_brokers()
            except Exception:  # the database may be away for a while; try again later
                logger.exception("could not sweep orphaned jobs, approvals or broker states")
            else:
                if orphans.interrupted:
                    logger.warning(
                        "marked jobs %s interrupted: their runner stopped", orphans.interrupted
                    )
                if orphans.taken_over:
                    logger.warning(
                        "took over jobs %s from a runner that stopped: storing the replies "
                        "waiting for them",
                        orphans.taken_over,
                    )
                if expired:
                    logger.info("approval of jobs %s expired", expired)
            threading.Event().wait(settings.SWITCHBOARD_JOB_STALE_AFTER / 2)

    threading.Thread(target=sweep_forever, name="orphaned-jobs", daemon=True).start()
