"""``manage.py issue_token USERNAME [--name NAME] [--expires-days N]``: a new API token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.accounts.services import CLI_TOKEN_NAME, issue_token
from portal.accounts.tokens import TokenError


class Command(BaseCommand):
    help = (
        "Make a new named API token of USERNAME and print it (only its hash is kept: it is"
        " shown this once), for 'Authorization: Token <token>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default=CLI_TOKEN_NAME, help="what the token is for")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="days until it expires (default: never, as before tokens expired)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        try:
            secret = issue_token(username, options["name"], options["expires_days"])
        except User.DoesNotExist as exc:
            raise CommandError(f"no operator named {username!r}") from exc
        except TokenError as exc:
            raise CommandError("; ".join(exc.errors.values())) from exc
        # Only the token on stdout: scripts and the test harness read it from there.
        self.stdout.write(secret)
