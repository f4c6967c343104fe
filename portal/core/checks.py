"""System checks for invariants that span several settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Tags, register
from django.http.request import split_domain_port, validate_host

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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@register(Tags.security, deploy=True)
def check_public_address(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """``ALLOWED_HOSTS`` and ``CSRF_TRUSTED_ORIGINS`` against ``SWITCHBOARD_PUBLIC_URL``.

    Behind nginx a wrong value shows only as a bare "400 Bad Request" (a host Django does not
    serve) or a refused sign-in (an origin it does not trust), far from its cause; the
    address people type is what both must agree with, so it is the one thing to set.
    """
    url = settings.SWITCHBOARD_PUBLIC_URL
    if not url:
        if not settings.PRODUCTION:
            return []
        return [
            checks.Warning(
                "SWITCHBOARD_PUBLIC_URL is not set, so ALLOWED_HOSTS and "
                "CSRF_TRUSTED_ORIGINS cannot be checked against the address people use.",
                hint="Set it to the portal's address, e.g. https://switchboard.example.net.",
                id="switchboard.W010",
            )
        ]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return [
            Error(
                f"SWITCHBOARD_PUBLIC_URL={url!r} is not an address like "
                "https://switchboard.example.net (a scheme and a host, no path).",
                id="switchboard.E010",
            )
        ]
    messages: list[CheckMessage] = []
    domain = split_domain_port(parts.netloc.rsplit("@", 1)[-1])[0]
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        messages.append(
            Error(
                f"ALLOWED_HOSTS {settings.ALLOWED_HOSTS} does not allow {parts.hostname!r}, the "
                "host of SWITCHBOARD_PUBLIC_URL: every request through the proxy would be "
                "refused with 400 Bad Request.",
                hint=f"Add {parts.hostname} to ALLOWED_HOSTS.",
                id="switchboard.E011",
            )
        )
    origin = _origin(url)
    trusted = [entry.lower().rstrip("/") for entry in settings.CSRF_TRUSTED_ORIGINS]
    if origin not in trusted:
        near = [entry for entry in trusted if urlsplit(entry).netloc == parts.netloc.lower()]
        why = f" ({', '.join(near)} has another scheme)" if near else ""
        messages.append(
            Error(
                f"CSRF_TRUSTED_ORIGINS {settings.CSRF_TRUSTED_ORIGINS} does not list {origin}, "
                f"the origin of SWITCHBOARD_PUBLIC_URL{why}: behind a proxy the sign-in form "
                "and every other form would be refused (403, CSRF verification failed).",
                hint=f"Add {origin} to CSRF_TRUSTED_ORIGINS.",
                id="switchboard.E012",
            )
        )
    if parts.scheme == "http" and settings.SESSION_COOKIE_SECURE:
        messages.append(
            Error(
                f"SWITCHBOARD_PUBLIC_URL={url!r} is plain HTTP but the session cookie is sent "
                "over HTTPS only (SESSION_COOKIE_SECURE): nobody could stay signed in.",
                hint="Serve the portal over HTTPS (deploy/nginx/switchboard.conf).",
                id="switchboard.E013",
            )
        )
    return messages
