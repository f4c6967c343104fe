"""API tokens: named, expiring, revocable, stored as a SHA-256 of the secret.

People are Django users and roles Django groups (``portal.rbac``); the only model of this app
is the token a script presents with ``Authorization: Token <secret>``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    """Reads of tokens: the ones that still authenticate, and the list pages' rows."""

    def live(self) -> ApiTokenQuerySet:
        """Not revoked and not expired (the owner's active flag is checked at use)."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires__isnull=True) | models.Q(expires__gt=now)
        )

    def expired(self) -> ApiTokenQuerySet:
        """Not revoked, but past their expiry."""
        return self.filter(revoked_at__isnull=True, expires__lte=timezone.now())

    def for_listing(self) -> ApiTokenQuerySet:
        """Newest first, with the owner and the revoker joined: one query for a page."""
        return self.select_related("user", "revoked_by").order_by("-created", "-pk")


class ApiToken(models.Model):
    """One named API token of one person. The secret is shown once, at creation; only its
    SHA-256 (``key_hash``) is kept, and its first characters (``prefix``) to recognise it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="accounts_token_user_live")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    @property
    def state(self) -> str:
        """ "revoked", "expired" or "active", as the token pages show it."""
        if self.revoked:
            return "revoked"
        return "expired" if self.expired else "active"
