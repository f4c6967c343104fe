from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.inventory.models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    """Read-only: nodes change only by registering (``services.record_registrations``)."""

    list_display = ("identity", "last_seen", "registered_at", "first_seen")
    search_fields = ("identity",)
    list_filter = ("last_seen",)
    ordering = ("identity",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
