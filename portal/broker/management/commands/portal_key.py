"""``manage.py portal_key``: the portal's signing key, made once, and its public half."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents.protocol.security import SigningKey, public_path


class Command(BaseCommand):
    help = (
        "Make the portal's Ed25519 signing key at SWITCHBOARD_SIGNING_KEY if there is none "
        "(mode 0600, never replacing one), then print where its public half is, its key id "
        "and the public key (PEM) every node must trust (docs/install.md)."
    )
    # Run before the first start, when the database and brokers may not be there yet.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.SWITCHBOARD_SIGNING_KEY)
        existed = path.exists()
        try:
            key = SigningKey.load_or_create(path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"the portal signing key {path} cannot be used: {exc}") from exc
        self.stderr.write(
            f"{'kept the existing' if existed else 'made a new'} signing key {path} "
            f"(key id {key.key_id}); its public half is {public_path(path)}"
        )
        self.stdout.write(key.public_pem(), ending="")
