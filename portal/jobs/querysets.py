"""Querysets for jobs: every read of jobs by a person goes through ``visible_to``."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models


class JobQuerySet(models.QuerySet):
    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> JobQuerySet:
        """Jobs this person may see: superusers and managers all, operators their own."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser or user.groups.filter(name="manager").exists():
            return self
        return self.filter(created_by=user)

    def unfinished(self) -> JobQuerySet:
        return self.filter(status__in=["queued", "running"])
