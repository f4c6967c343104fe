"""Streaming exports of audit events, CSV or JSON lines, in constant memory.

Rows come from a server-side cursor (``QuerySet.iterator``) inside one transaction, are
written in ~64 KiB pieces, and go out through a ``StreamingHttpResponse``: under ASGI as an
async iterator that pulls one piece at a time (Django would otherwise read a synchronous
iterator to the end into a list before sending anything).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest, StreamingHttpResponse

from portal.audit.chain import HASHED_FIELDS, format_at
from portal.audit.querysets import AuditEventQuerySet
from portal.audit.services import CHUNK, event_as_json

logger = logging.getLogger(__name__)

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
# The hashed fields between the id and the hash: what a reader needs to re-check the chain.
CSV_COLUMNS = ("id", *HASHED_FIELDS, "hash")
PIECE_BYTES = 64 * 1024
# Each FETCH of CHUNK rows may take this long: bounds a rare search's scan, not the export.
FETCH_TIMEOUT_MS = 60_000
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = ("actor", "agent", "action", "outcome", "summary")


def export_rows(events: AuditEventQuerySet, through_id: int) -> Generator[dict[str, Any]]:
    """The events (oldest first, up to ``through_id``) as dicts, read CHUNK at a time.

    One transaction, so that PostgreSQL's cursor is an ordinary one that streams (outside a
    transaction Django declares it WITH HOLD, which materialises every row at the start).
    """
    using = events.db
    with transaction.atomic(using=using):
        if connections[using].vendor == "postgresql":
            with connections[using].cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)", [f"{FETCH_TIMEOUT_MS}ms"]
                )
        rows = (
            events.filter(id__lte=through_id)
            .order_by("id")
            .values("id", "hash", *HASHED_FIELDS)
            .iterator(chunk_size=CHUNK)
        )
        yield from rows


def _csv_cell(column: str, value: Any) -> Any:
    if column in ("roles", "nodes", "data"):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if column == "at":
        return format_at(value)
    if value is None:
        return ""
    if column in _TEXT_COLUMNS and isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _pieces(lines: Iterator[str]) -> Iterator[bytes]:
    """Join lines into pieces of about PIECE_BYTES."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= PIECE_BYTES:
            yield "".join(batch).encode("utf-8")
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode("utf-8")


def csv_lines(rows: Iterator[Mapping[str, Any]]) -> Iterator[str]:
    """A header, then one CSV record per event. Text cells a spreadsheet would run as a
    formula get a leading apostrophe; export JSON lines for the exact, verifiable values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in _guarded(rows):
        if "error" in row:
            writer.writerow(["ERROR", "", "", "", "", "", "", "", "", "", row["error"]])
        else:
            writer.writerow([_csv_cell(column, row[column]) for column in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def jsonl_lines(rows: Iterator[Mapping[str, Any]]) -> Iterator[str]:
    """One JSON object per line per event, as archives are written (``verify_audit
    --archive`` checks a complete, unfiltered export)."""
    for row in _guarded(rows):
        document = row if "error" in row else event_as_json(row)
        yield json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def _guarded(rows: Iterator[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The rows, and a last ``{"error": ...}`` row if the database stopped mid-way: the
    response has started, so a status code can no longer say so."""
    try:
        yield from rows
    except DatabaseError as exc:
        logger.warning("audit export stopped: %s", exc)
        yield {"error": f"export stopped by the database, rows above are incomplete: {exc}"}


def export_pieces(events: AuditEventQuerySet, through_id: int, fmt: str) -> Generator[bytes]:
    """The whole export as byte pieces; ``fmt`` is a key of ``FORMATS``.

    Closing it (a client gone mid-download) closes the cursor and its transaction at once.
    """
    rows = export_rows(events, through_id)
    try:
        yield from _pieces(csv_lines(rows) if fmt == "csv" else jsonl_lines(rows))
    finally:
        rows.close()


def _next_piece(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)


async def _pulled(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each piece made in the request's own thread (its database connection and open
    transaction), handed to the event loop one at a time."""
    step = sync_to_async(_next_piece, thread_sensitive=True)
    try:
        while (piece := await step(pieces)) is not None:
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()


def streaming_response(
    request: HttpRequest, pieces: Iterator[bytes], fmt: str, filename: str
) -> StreamingHttpResponse:
    """A download of ``pieces``: async under ASGI, a plain iterator under WSGI."""
    content: Iterator[bytes] | AsyncIterator[bytes] = (
        _pulled(pieces) if isinstance(request, ASGIRequest) else pieces
    )
    response = StreamingHttpResponse(content, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
