from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.targeting.models import SavedFilter


@admin.register(SavedFilter)
class SavedFilterAdmin(admin.ModelAdmin):
    """Read and delete only: saving goes through ``services.save_filter``, which parses."""

    list_display = ("name", "owner", "shared_with", "expression", "created_at")
    list_filter = ("shared_with",)
    search_fields = ("name", "expression", "owner__username")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
