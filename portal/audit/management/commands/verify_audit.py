"""``manage.py verify_audit``: re-hash the audit chain; exit 1 naming the first broken event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.chain import check_links
from portal.audit.models import AuditEvent
from portal.audit.services import archive_rows, check_chain


class Command(BaseCommand):
    help = (
        "Check every audit event's hash and its link to the event before. Exits 0 with the "
        "count when the chain is intact, 1 naming the first event where it breaks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--archive",
            type=Path,
            help="check an archive written by prune_audit (or a full JSON-lines export) instead",
        )

    def handle(self, *args: Any, archive: Path | None = None, **options: Any) -> None:
        if archive is not None:
            self._check_archive(archive)
            return
        report = check_chain()
        if report.first_break is not None:
            event = AuditEvent.objects.filter(pk=report.first_break.event_id).first()
            what = f" ({event.kind} at {event.at:%Y-%m-%d %H:%M:%S} UTC)" if event else ""
            raise CommandError(
                f"audit chain broken at event {report.first_break.event_id}{what}: "
                f"{report.first_break.reason}; {report.checked} events before it are intact",
                returncode=1,
            )
        anchor = (
            f"anchored by audit.pruned event {report.anchor_event_id}"
            if report.anchor_event_id
            else "from the start"
        )
        self.stdout.write(
            f"audit chain intact: {report.checked} events, {anchor}; head hash {report.head_hash}"
        )

    def _check_archive(self, path: Path) -> None:
        if not path.is_file():
            raise CommandError(f"no archive at {path}")
        rows = archive_rows(path)
        first = next(rows, None)
        if first is None:
            self.stdout.write(f"{path}: empty")
            return
        result = check_links(_chain(first, rows), first["prev_hash"])
        if result.first_break is not None:
            raise CommandError(
                f"{path}: chain broken at event {result.first_break.event_id}: "
                f"{result.first_break.reason}",
                returncode=1,
            )
        self.stdout.write(
            f"{path}: intact, {result.checked} events from event {first['id']} "
            f"(prev_hash {first['prev_hash']}); last hash {result.last_hash}"
        )


def _chain(first: dict[str, Any], rest: Any) -> Any:
    yield first
    yield from rest
