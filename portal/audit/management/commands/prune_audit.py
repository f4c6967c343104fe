"""``manage.py prune_audit``: archive, then delete, audit events past the retention period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.services import PruneError, prune_events


class Command(BaseCommand):
    help = (
        "Write events older than SWITCHBOARD_AUDIT_RETENTION_DAYS to a gzipped JSON-lines "
        "archive in SWITCHBOARD_AUDIT_ARCHIVE_DIR, delete them, and record an audit.pruned "
        "event (count, archive, sha256, the anchor hash the chain now starts from)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep this many days (default: SWITCHBOARD_AUDIT_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--archive-dir",
            type=Path,
            default=None,
            help="where the archive goes (default: SWITCHBOARD_AUDIT_ARCHIVE_DIR)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] or settings.SWITCHBOARD_AUDIT_RETENTION_DAYS
        archive_dir = options["archive_dir"] or settings.SWITCHBOARD_AUDIT_ARCHIVE_DIR
        try:
            result = prune_events(retention_days=days, archive_dir=Path(archive_dir))
        except PruneError as exc:
            raise CommandError(f"audit pruning stopped: {exc}") from exc
        if result.deleted:
            self.stdout.write(
                f"pruned {result.deleted} audit events older than {days} days; archive "
                f"{result.archive}; the chain now starts from {result.anchor_hash} "
                f"(recorded as event {result.event.pk})"
            )
        else:
            self.stdout.write(
                f"no audit event older than {days} days (recorded as event {result.event.pk})"
            )
