"""``manage.py issue_token USERNAME``: print the user's API token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.accounts.services import issue_token


class Command(BaseCommand):
    help = "Print USERNAME's API token (created on first use), for 'Authorization: Token <key>'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.stdout.write(issue_token(options["username"]))
        except User.DoesNotExist as exc:
            raise CommandError(f"no operator named {options['username']!r}") from exc
