"""Querysets for jobs: every read of jobs by a person goes through ``visible_to``."""

from __future__ import annotations

from typing import Any

from django.db import models

from portal.rbac.policy import User, visible_jobs


class JobQuerySet(models.QuerySet[Any]):
    def visible_to(self, user: User) -> JobQuerySet:
        """Jobs this person may watch and read, as ``portal.rbac.policy`` decides."""
        return visible_jobs(user, self)

    def unfinished(self) -> JobQuerySet:
        """Jobs queued or running: the ones a runner owes an end (not those awaiting approval,
        which end by a decision or by expiring)."""
        return self.filter(status__in=["queued", "running"])
