"""System checks for invariants that span several settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from agents.protocol import parse_brokers


@register(Tags.security, deploy=True)
def check_production_secrets(app_configs: Any, **kwargs: Any) -> list[Error]:
    """The production profile must not run on the embedded profile's well-known secret key."""
    if settings.PRODUCTION and settings.SECRET_KEY == settings.EMBEDDED_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is the embedded profile's public default.",
                hint="Set SECRET_KEY in the environment for SWITCHBOARD_PROFILE=production.",
                id="switchboard.E001",
            )
        ]
    return []


@register()
def check_stomp_brokers(app_configs: Any, **kwargs: Any) -> list[Error]:
    """``STOMP_BROKERS`` must be a parseable ``host:port[,host:port...]`` list."""
    try:
        parse_brokers(settings.STOMP_BROKERS)
    except ValueError as exc:
        return [Error(f"STOMP_BROKERS is invalid: {exc}", id="switchboard.E002")]
    return []


@register()
def check_production_services(app_configs: Any, **kwargs: Any) -> list[Error]:
    """The production profile needs PostgreSQL and Redis, not the embedded stand-ins."""
    if not settings.PRODUCTION:
        return []
    errors = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        errors.append(
            Error("production profile needs DATABASE_URL=postgres://...", id="switchboard.E003")
        )
    if not settings.REDIS_URL:
        errors.append(
            Error("production profile needs REDIS_URL=redis://...", id="switchboard.E004")
        )
    return errors
