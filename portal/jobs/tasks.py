"""Celery tasks for jobs: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from portal.jobs import runner
from portal.jobs.services import RUN_JOB_TASK


@shared_task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: int) -> None:
    """Run a submitted job on the broker network; a second delivery of the task does nothing."""
    runner.run_job(job_id)
