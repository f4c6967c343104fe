"""A time limit on the audit pages' queries, so no search can run unbounded.

PostgreSQL: ``statement_timeout`` set for the enclosing transaction only. SQLite: a progress
handler that interrupts the statement once the deadline has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout.
QUERY_CANCELED = "57014"


class QueryTooSlow(Exception):
    """A query ran past its time limit and was stopped."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s and was stopped; narrow it with a "
            "date range, an operator, an agent or a kind"
        )
        self.seconds = seconds


def _was_cancelled(exc: OperationalError) -> bool:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == QUERY_CANCELED:
        return True
    return "interrupted" in str(exc)


@contextmanager
def time_limit(seconds: float, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block's queries in one transaction, each stopped after ``seconds``.

    Raises ``QueryTooSlow`` when one is stopped. Evaluate querysets inside the block.
    """
    connection = connections[using]
    sqlite = None  # the raw SQLite connection whose progress handler stops a slow query
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [f"{max(int(seconds * 1000), 1)}ms"],
                )
        elif connection.vendor == "sqlite":
            sqlite = connection.connection
            deadline = time.monotonic() + seconds
            sqlite.set_progress_handler(lambda: int(time.monotonic() > deadline), 20_000)
        try:
            yield
        except OperationalError as exc:
            if _was_cancelled(exc):
                raise QueryTooSlow(seconds) from exc
            raise
        finally:
            if sqlite is not None:
                sqlite.set_progress_handler(None, 0)
