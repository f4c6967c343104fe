"""Exports: streamed CSV and JSON lines of any filtered view, each recorded as an event."""

from __future__ import annotations

import csv
import io
import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from portal.audit.chain import GENESIS, check_links
from portal.audit.export import PIECE_BYTES
from portal.audit.models import AuditEvent
from portal.audit.services import record_event

pytestmark = pytest.mark.django_db


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_csv_export_streams_the_filtered_view_and_records_itself(manager_client, make_event):
    make_event(agent="service", action="restart", summary="restart nginx", nodes=["web01"])
    make_event(agent="package", action="install", summary="install curl")
    before = AuditEvent.objects.order_by("-id")[0].pk
    response = manager_client.get("/audit/export.csv?agent=service")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="switchboard-audit-')
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [(r["agent"], r["action"], r["summary"]) for r in rows] == [
        ("service", "restart", "restart nginx")
    ]
    assert json.loads(rows[0]["nodes"]) == ["web01"]
    exported = AuditEvent.objects.get(kind="audit.exported")
    assert (exported.actor, exported.outcome) == ("mgr", "ok")
    assert exported.data == {"format": "csv", "filters": {"agent": "service"}, "through_id": before}


def test_jsonl_export_of_everything_is_a_verifiable_chain(manager_client, make_event) -> None:
    for index in range(30):
        make_event(job_id=index, data={"inputs": {"n": index, "f": 0.1 * index}})
    lines = body(manager_client.get("/audit/export.jsonl")).splitlines()
    documents = [json.loads(line) for line in lines]
    stored = AuditEvent.objects.exclude(kind="audit.exported").count()
    assert len(documents) == stored
    assert [d["id"] for d in documents] == sorted(d["id"] for d in documents)
    assert check_links(documents, GENESIS).first_break is None


def test_the_export_is_a_snapshot_up_to_the_event_before_it(manager_client, make_event) -> None:
    make_event()
    first = body(manager_client.get("/audit/export.jsonl"))
    second = body(manager_client.get("/audit/export.jsonl"))
    kinds = [json.loads(line)["kind"] for line in second.splitlines()]
    assert "audit.exported" not in first and kinds.count("audit.exported") == 1


def test_spreadsheet_formulas_are_defused_in_csv(manager_client, make_event) -> None:
    make_event(summary='=HYPERLINK("http://evil.example","click")', actor="@admin")
    rows = list(
        csv.DictReader(
            io.StringIO(body(manager_client.get("/audit/export.csv?kind=job.submitted")))
        )
    )
    assert rows[0]["summary"].startswith("'=HYPERLINK")
    assert rows[0]["actor"] == "'@admin"


def test_a_large_export_comes_in_pieces(manager_client, make_event) -> None:
    for _ in range(400):
        make_event(data={"inputs": {"blob": "x" * 500}})
    response = manager_client.get("/audit/export.jsonl")
    pieces = list(response.streaming_content)
    assert len(pieces) > 2
    assert all(len(piece) < PIECE_BYTES + 2000 for piece in pieces)


def test_a_bad_filter_is_a_400_and_exports_nothing(manager_client) -> None:
    response = manager_client.get("/audit/export.csv?from=yesterday")
    assert response.status_code == 400
    assert "from: 'yesterday' is not a date" in response.content.decode()
    assert not AuditEvent.objects.filter(kind="audit.exported").exists()
    assert manager_client.get("/audit/export.xml").status_code == 400


def test_operators_cannot_export(operator) -> None:
    client = Client()
    client.force_login(operator)
    assert client.get("/audit/export.csv").status_code == 403
    assert not AuditEvent.objects.filter(kind="audit.exported").exists()


@pytest.mark.django_db(transaction=True)
def test_under_asgi_the_export_is_an_async_stream(manager) -> None:
    """Django reads a synchronous iterator to the end before sending under ASGI: the export
    must hand it an async one, pulled piece by piece (each in the request's thread)."""
    for index in range(300):
        record_event("job.submitted", actor="noc", data={"i": "y" * 400, "n": index})
    client = AsyncClient()
    client.force_login(manager)

    async def download() -> tuple[int, bool, list[bytes]]:
        response = await client.get("/audit/export.jsonl")
        pieces = [piece async for piece in response.streaming_content]
        return response.status_code, response.is_async, pieces

    status, is_async, pieces = async_to_sync(download)()
    assert (status, is_async) == (200, True)
    assert len(pieces) > 1
    lines = b"".join(pieces).decode().splitlines()
    assert len(lines) == 301  # 300 events and the login, not the export itself
    assert AuditEvent.objects.filter(kind="audit.exported").count() == 1


def test_a_download_stopped_half_way_closes_its_cursor_and_transaction(make_event) -> None:
    from django.db import connection

    from portal.audit.export import export_pieces

    for _ in range(3000):
        make_event(data={"inputs": {"blob": "z" * 100}})
    depth = len(connection.atomic_blocks)
    pieces = export_pieces(AuditEvent.objects.all(), 10**9, "jsonl")
    next(pieces)
    assert len(connection.atomic_blocks) == depth + 1  # the export's own transaction
    pieces.close()  # what the server does when the client goes away
    assert len(connection.atomic_blocks) == depth
    assert AuditEvent.objects.count() == 3000  # the connection is still usable
