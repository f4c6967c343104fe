"""Saved filters: the target expressions operators name to start from again."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models.functions import Lower

from portal.targeting.querysets import SavedFilterQuerySet

MAX_NAME_LENGTH = 100


class SavedFilter(models.Model):
    """A named compound filter expression: its owner's alone, or shared with one role.

    Written only by ``portal.targeting.services`` (which parses the expression first); read
    through ``SavedFilter.objects.visible_to(user)``. Names are unique per owner, in any case.
    """

    name = models.CharField(max_length=MAX_NAME_LENGTH)
    expression = models.TextField(help_text="A compound filter expression, valid when saved.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_filters"
    )
    shared_with = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="shared_filters",
        help_text="The role (group) whose members may use it too; empty: private.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SavedFilterQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"), "owner", name="targeting_savedfilter_unique_name_per_owner"
            )
        ]

    def __str__(self) -> str:
        return self.name
