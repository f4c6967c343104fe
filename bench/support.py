"""What the benchmarks share: a throwaway database with the portal migrated into it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from harness.databases import postgres_database  # noqa: E402


@contextmanager
def throwaway_portal(
    name: str, *, sqlite: bool, keep: bool = False, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Django set up on a new database (PostgreSQL, or SQLite with ``sqlite``), migrated;
    yields its URL and drops it at the end unless ``keep``. ``env`` is set before Django
    reads its settings."""
    var_dir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    Path(var_dir, "static").mkdir()  # where the portal collects static files; none needed
    with ExitStack() as cleanup:
        if sqlite:
            url = f"sqlite:///{var_dir}/bench.sqlite3"
        else:
            prefix = f"bench_{name.replace('-', '_')}"
            url = cleanup.enter_context(postgres_database(prefix, keep=keep))
        os.environ.update(
            {"DATABASE_URL": url, "SWITCHBOARD_VAR_DIR": var_dir,
             "DJANGO_SETTINGS_MODULE": "portal.settings", **(env or {})}
        )  # fmt: skip
        try:
            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", verbosity=0, interactive=False)
            yield url
        finally:
            if "django.db" in sys.modules:
                from django.db import connections

                connections.close_all()
            if sqlite and keep:
                print(f"kept the database: {url}", file=sys.stderr)
            elif sqlite:
                shutil.rmtree(var_dir, ignore_errors=True)
