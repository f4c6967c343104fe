"""Querysets for jobs: every read of jobs by a person goes through ``visible_to``."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from portal.rbac.policy import visible_jobs


class JobQuerySet(models.QuerySet):
    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> JobQuerySet:
        """Jobs this person may watch and read, as ``portal.rbac.policy`` decides."""
        return visible_jobs(user, self)

    def unfinished(self) -> JobQuerySet:
        """Jobs queued or running: the ones a runner owes an end (not those awaiting approval,
        which end by a decision or by expiring)."""
        return self.filter(status__in=["queued", "running"])
