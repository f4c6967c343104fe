"""``manage.py nodes``: enrolment from the command line, like ``salt-key``.

manage.py nodes pending                       # identities waiting, with their key ids
manage.py nodes list [--state S] [--conflicts]
manage.py nodes accept|reject|revoke|rekey|forget IDENTITY... --user admin
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.accounts.services import operator_for_command
from portal.inventory import services
from portal.inventory.models import Enrolment
from portal.rbac.policy import may_administer


class Command(BaseCommand):
    help = "List node enrolments, or accept, reject, revoke, re-key or forget nodes (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("command", choices=["pending", "list", *services.ENROLMENT_DECISIONS])
        parser.add_argument("identities", nargs="*", help="the nodes to decide on")
        parser.add_argument("--user", default="admin", help="the admin deciding (audited)")
        parser.add_argument("--state", choices=Enrolment.State.values, help="list: only these")
        parser.add_argument("--conflicts", action="store_true", help="list: only key conflicts")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["command"]
        if command in ("pending", "list"):
            state = Enrolment.State.PENDING if command == "pending" else options["state"]
            self._list(state, options["conflicts"])
            return
        if not options["identities"]:
            raise CommandError(f"nodes {command}: name at least one identity")
        user = operator_for_command(options["user"])
        if not may_administer(user):
            raise CommandError(
                f"{user} is not an admin: only admins decide which nodes are trusted"
            )
        failed = []
        for identity in options["identities"]:
            try:
                enrolment = services.ENROLMENT_DECISIONS[command](identity, user)
            except services.EnrolmentError as exc:
                self.stderr.write(f"{identity}: {exc}")
                failed.append(identity)
                continue
            state = enrolment.state if enrolment is not None else "forgotten"
            key = f" (key {enrolment.key_id})" if enrolment is not None else ""
            self.stdout.write(f"{identity}: {state}{key}")
        if failed:
            raise CommandError(
                f"nodes {command}: {len(failed)} of {len(options['identities'])} failed"
            )

    def _list(self, state: str | None, conflicts: bool) -> None:
        enrolments = Enrolment.objects.order_by("identity")
        if state:
            enrolments = enrolments.filter(state=state)
        if conflicts:
            enrolments = enrolments.exclude(conflict_key_id="")
        count = 0
        for e in enrolments.iterator():
            conflict = (
                f"  CONFLICT key {e.conflict_key_id} x{e.conflict_count}" if e.has_conflict else ""
            )
            self.stdout.write(f"{e.identity}  {e.state}  key {e.key_id}{conflict}")
            count += 1
        self.stdout.write(f"{count} node(s)")
