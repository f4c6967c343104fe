"""Retention: prune_audit archives what it deletes, deletes, and records it; the chain still
verifies from the recorded anchor."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.audit.services import (
    PruneError,
    archive_rows,
    check_chain,
    prune_events,
    verify_chain,
)
from tests.audit.conftest import clock, tamper

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_event) -> list[AuditEvent]:
    """Two events past a year's retention, two inside it."""
    now = timezone.now()
    events = []
    for days_ago in (400, 380, 100, 1):
        with clock(now - timedelta(days=days_ago)):
            events.append(make_event(summary=f"{days_ago} days ago", job_id=days_ago))
    return events


def test_pruning_archives_then_deletes_then_records(history, tmp_path) -> None:
    result = prune_events(retention_days=365, archive_dir=tmp_path)
    assert result.deleted == 2
    assert list(AuditEvent.objects.order_by("id").values_list("summary", flat=True)) == [
        "100 days ago",
        "1 days ago",
        result.event.summary,
    ]
    archived = list(archive_rows(result.archive))
    assert [row["id"] for row in archived] == [history[0].pk, history[1].pk]
    assert archived[1]["hash"] == history[1].hash == result.anchor_hash
    assert result.archive.name.startswith(f"audit-{history[0].pk:012d}-{history[1].pk:012d}-")
    pruned = result.event
    assert (pruned.kind, pruned.actor, pruned.outcome) == ("audit.pruned", "", "ok")
    assert pruned.data["deleted"] == 2
    assert pruned.data["anchor_hash"] == history[1].hash
    assert pruned.data["last_pruned_id"] == history[1].pk
    assert pruned.data["archive"] == str(result.archive)
    digest = hashlib.sha256(result.archive.read_bytes()).hexdigest()
    assert pruned.data["archive_sha256"] == digest
    assert not list(tmp_path.glob("*.partial"))


def test_the_chain_verifies_from_the_anchor_after_pruning(history, tmp_path, capsys) -> None:
    result = prune_events(retention_days=365, archive_dir=tmp_path)
    report = check_chain()
    assert report.intact and report.checked == 3
    assert (report.anchor_hash, report.anchor_event_id) == (history[1].hash, result.event.pk)
    call_command("verify_audit")
    assert f"3 events, anchored by audit.pruned event {result.event.pk}" in capsys.readouterr().out
    call_command("verify_audit", "--archive", str(result.archive))
    assert "intact, 2 events" in capsys.readouterr().out


def test_deleting_the_oldest_event_left_is_still_found(history, tmp_path) -> None:
    prune_events(retention_days=365, archive_dir=tmp_path)
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [history[2].pk])
    broken = verify_chain()
    assert broken is not None and broken.pk == history[3].pk


def test_a_changed_archive_fails_its_check(history, tmp_path) -> None:
    result = prune_events(retention_days=365, archive_dir=tmp_path)
    rows = list(archive_rows(result.archive))
    rows[1]["summary"] = "never happened"
    with gzip.open(result.archive, "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", "--archive", str(result.archive))
    assert failure.value.returncode == 1
    assert f"broken at event {history[1].pk}" in str(failure.value)


def test_nothing_to_prune_is_recorded_too(make_event, tmp_path) -> None:
    make_event()
    result = prune_events(retention_days=30, archive_dir=tmp_path)
    assert (result.deleted, result.archive) == (0, None)
    assert result.event.data["deleted"] == 0
    assert result.event.summary.startswith("nothing older than")
    assert not list(tmp_path.iterdir())
    assert verify_chain() is None


def test_pruning_every_event_keeps_the_chain(make_event, tmp_path) -> None:
    now = timezone.now()
    with clock(now - timedelta(days=50)):
        old = [make_event() for _ in range(3)]
    result = prune_events(retention_days=10, archive_dir=tmp_path)
    assert result.deleted == 3
    assert list(AuditEvent.objects.values_list("kind", flat=True)) == ["audit.pruned"]
    assert result.event.prev_hash == old[-1].hash
    assert verify_chain() is None


def test_pruning_twice_moves_the_anchor(history, tmp_path) -> None:
    prune_events(retention_days=365, archive_dir=tmp_path)
    second = prune_events(retention_days=50, archive_dir=tmp_path)
    assert second.deleted == 1 and second.anchor_hash == history[2].hash
    report = check_chain()
    assert report.intact and report.anchor_event_id == second.event.pk
    # The first prune event is newer than the cut-off and stays; its anchor is history now.
    assert AuditEvent.objects.filter(kind="audit.pruned").count() == 2


def test_a_count_mismatch_deletes_nothing(history, tmp_path) -> None:
    with (
        mock.patch("portal.audit.services._write_archive", return_value=(1, "0" * 64)),
        pytest.raises(PruneError, match="2 events matched but 1 were archived"),
    ):
        prune_events(retention_days=365, archive_dir=tmp_path)
    assert AuditEvent.objects.count() == 4
    assert verify_chain() is None


def test_the_command_uses_the_settings(history, tmp_path, settings, capsys) -> None:
    settings.SWITCHBOARD_AUDIT_RETENTION_DAYS = 200
    settings.SWITCHBOARD_AUDIT_ARCHIVE_DIR = tmp_path / "archives"
    call_command("prune_audit")
    out = capsys.readouterr().out
    assert "pruned 2 audit events older than 200 days; archive " in out
    assert len(list((tmp_path / "archives").glob("audit-*.jsonl.gz"))) == 1
    call_command("prune_audit", "--days", "50", "--archive-dir", str(tmp_path / "other"))
    assert "pruned 1 audit events older than 50 days" in capsys.readouterr().out


def test_a_retention_under_a_day_is_refused(tmp_path) -> None:
    with pytest.raises(PruneError, match="keep at least one day"):
        prune_events(retention_days=0, archive_dir=tmp_path)


def test_the_beat_schedule_prunes_daily_through_the_registered_task(history, tmp_path, settings):
    """beat queues the retention task by name; the task prunes with the settings' period and
    archive directory, as ``manage.py prune_audit`` does with its defaults."""
    from celery.schedules import crontab

    from portal.audit.tasks import PRUNE_AUDIT_TASK, prune_audit
    from portal.celery import app

    entry = app.conf.beat_schedule["audit-retention"]
    assert entry["task"] == PRUNE_AUDIT_TASK
    assert PRUNE_AUDIT_TASK in app.tasks
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {3}

    settings.SWITCHBOARD_AUDIT_RETENTION_DAYS = 365
    settings.SWITCHBOARD_AUDIT_ARCHIVE_DIR = str(tmp_path)
    prune_audit()
    pruned = AuditEvent.objects.get(kind="audit.pruned")
    assert pruned.data["deleted"] == 2
    assert pruned.data["retention_days"] == 365
    assert [path.parent for path in tmp_path.glob("audit-*.jsonl.gz")] == [tmp_path]
