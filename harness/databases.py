"""Throwaway PostgreSQL databases on the local server, for one stack or one benchmark."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/{database}"


@contextmanager
def postgres_database(prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new, empty database ``<prefix>_<random>``; yields its URL, drops it at the end
    (closing whatever is still connected) unless ``keep``."""
    import psycopg

    database = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = POSTGRES_URL.format(database=database)
    try:
        yield url
    finally:
        if keep:
            print(f"kept the database: {url}", file=sys.stderr)
        else:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
