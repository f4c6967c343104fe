"""Querysets for saved filters: every read by a person goes through ``visible_to``."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db import models


class SavedFilterQuerySet(models.QuerySet):
    def visible_to(self, user: User | AnonymousUser) -> SavedFilterQuerySet:
        """The person's own filters and those shared with one of their roles (groups)."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(models.Q(owner=user) | models.Q(shared_with__in=user.groups.all()))
