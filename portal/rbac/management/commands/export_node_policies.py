"""``manage.py export_node_policies DIR``: the grants as node policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.rbac.node_policies import write_node_policies


class Command(BaseCommand):
    help = "Write one <agent>.policy per agent into DIR, from the roles' grants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        exported = write_node_policies(options["directory"])
        for reason in exported.skipped:
            self.stderr.write(f"skipped {reason}")
        self.stdout.write(f"wrote {len(exported.files)} policy files to {options['directory']}")
