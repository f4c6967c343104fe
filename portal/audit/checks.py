"""System checks for the audit settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_audit_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    """Retention of at least a day, and a positive time limit for the audit pages."""
    errors = []
    if settings.SWITCHBOARD_AUDIT_RETENTION_DAYS < 1:
        errors.append(
            Error(
                f"SWITCHBOARD_AUDIT_RETENTION_DAYS is {settings.SWITCHBOARD_AUDIT_RETENTION_DAYS}.",
                hint="Keep audit events at least one day (365 by default).",
                id="audit.E001",
            )
        )
    if settings.SWITCHBOARD_AUDIT_QUERY_TIMEOUT <= 0:
        errors.append(
            Error(
                f"SWITCHBOARD_AUDIT_QUERY_TIMEOUT is {settings.SWITCHBOARD_AUDIT_QUERY_TIMEOUT}.",
                hint="Give the audit pages' queries a time limit in seconds (5 by default).",
                id="audit.E002",
            )
        )
    return errors
