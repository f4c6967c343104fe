"""``manage.py seed_demo``: create or reset the demo accounts and print their logins."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from portal.accounts.services import ensure_demo_users


class Command(BaseCommand):
    help = "Create or reset the demo accounts admin, manager and noc, and print their passwords."

    def handle(self, *args: Any, **options: Any) -> None:
        for login in ensure_demo_users(os.environ.get("SWITCHBOARD_DEMO_PASSWORD") or None):
            self.stdout.write(f"  {login.username:<8} {login.password:<16} ({login.role})")
