"""``manage.py cancel_job ID``: ask a running job to stop."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.accounts.services import operator_for_command
from portal.jobs.models import Job
from portal.jobs.services import cancel_job
from portal.rbac.policy import CANCEL_REFUSED, may_cancel


class Command(BaseCommand):
    help = (
        "Ask job ID to stop (it keeps the replies it has and is marked cancelled), or"
        " withdraw it while it waits for approval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", type=int)
        parser.add_argument("--user", default="admin", help="the operator asking")

    def handle(self, *args: Any, **options: Any) -> None:
        user = operator_for_command(options["user"])
        job = Job.objects.visible_to(user).filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"no job {options['job_id']} visible to {user}")
        if not may_cancel(user, job):
            raise CommandError(f"{user} may not cancel job {job.pk}: {CANCEL_REFUSED}")
        if job.is_finished:
            raise CommandError(f"job {job.pk} has already finished ({job.status})")
        job = cancel_job(job, user)
        if job.status == Job.Status.WITHDRAWN:
            self.stdout.write(f"job {job.pk}: withdrawn before approval")
        elif job.is_finished:
            self.stdout.write(f"job {job.pk}: {job.status} ({job.error})")
        else:
            self.stdout.write(f"job {job.pk}: cancel requested; it stops within a second")
