"""``manage.py cancel_job ID``: ask a running job to stop."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.jobs.models import Job
from portal.jobs.services import cancel_job


class Command(BaseCommand):
    help = "Ask job ID to stop; it keeps the replies it has and is marked cancelled."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", type=int)
        parser.add_argument("--user", default="admin", help="the operator asking")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(username=options["user"])
        except user_model.DoesNotExist as exc:
            raise CommandError(f"no operator named {options['user']!r}") from exc
        job = Job.objects.visible_to(user).filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"no job {options['job_id']} visible to {user}")
        if job.is_finished:
            raise CommandError(f"job {job.pk} has already finished ({job.status})")
        job = cancel_job(job, user)
        self.stdout.write(f"job {job.pk}: cancel requested ({job.status})")
