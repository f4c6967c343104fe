"""On PostgreSQL: the append-only trigger, concurrent writers, and the commands for real.

Each test gets its own database, copied from one migrated with ``manage.py migrate`` (so the
trigger comes from the migration itself), and talks to it from other processes, whatever
database the rest of the suite runs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.services import port_open, require_service

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

BASE_DIR = Path(__file__).resolve().parents[2]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def url_of(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def run(url: str, *args: str, var: Path) -> subprocess.CompletedProcess[str]:
    """A Python process of the portal on ``url``."""
    env = {**os.environ, "DATABASE_URL": url, "SWITCHBOARD_VAR_DIR": str(var)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Iterator[str]:
    require_service(
        "PostgreSQL", port_open("127.0.0.1", 5432), "expected on 127.0.0.1:5432 (user postgres)"
    )
    name = f"switchboard_audit_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        done = run(url_of(name), "manage.py", "migrate", "-v0", var=tmp_path_factory.mktemp("var"))
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg(template: str) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test."""
    name = f"switchboard_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield url_of(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write(url: str, label: str, count: int, var: Path, *extra: str) -> None:
    done = run(url, "-m", "tests.audit.pg_worker", label, str(count), *extra, var=var)
    assert done.returncode == 0, done.stderr


def verify(url: str, var: Path) -> subprocess.CompletedProcess[str]:
    return run(url, "manage.py", "verify_audit", var=var)


def test_the_trigger_refuses_update_and_delete(pg, tmp_path) -> None:
    write(pg, "a", 3, tmp_path)
    with psycopg.connect(pg, autocommit=True) as db:
        event_id = db.execute("SELECT min(id) FROM audit_auditevent").fetchone()[0]
        with pytest.raises(psycopg.errors.RaiseException, match="append-only: UPDATE of event"):
            db.execute("UPDATE audit_auditevent SET summary = 'x' WHERE id = %s", [event_id])
        with pytest.raises(psycopg.errors.RaiseException, match="append-only: DELETE of event"):
            db.execute("DELETE FROM audit_auditevent WHERE id = %s", [event_id])
        with pytest.raises(psycopg.errors.RaiseException, match="UPDATE of event"):
            db.execute(
                "UPDATE audit_auditevent SET actor_user_id = NULL, actor = 'x' WHERE id = %s",
                [event_id],
            )
        # What Django's on_delete=SET_NULL does when an account is deleted: allowed.
        db.execute("UPDATE audit_auditevent SET actor_user_id = NULL WHERE id = %s", [event_id])
        # Pruning's transaction-local setting lets a DELETE through, in that transaction only.
        with db.transaction():
            db.execute("SELECT set_config('switchboard.audit_prune', 'on', true)")
            db.execute("DELETE FROM audit_auditevent WHERE id = %s", [event_id])
            raise psycopg.Rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="DELETE of event"):
            db.execute("DELETE FROM audit_auditevent WHERE id = %s", [event_id])
        assert db.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] == 3
    assert verify(pg, tmp_path).returncode == 0


def test_deleting_an_account_keeps_its_events(pg, tmp_path) -> None:
    write(pg, "gone", 2, tmp_path)
    code = (
        "from django.contrib.auth.models import User; "
        "User.objects.get(username='pgw-gone').delete()"
    )
    done = run(pg, "manage.py", "shell", "-c", code, var=tmp_path)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg) as db:
        rows = db.execute("SELECT actor, actor_user_id FROM audit_auditevent").fetchall()
    assert rows == [("pgw-gone", None), ("pgw-gone", None)]
    assert verify(pg, tmp_path).returncode == 0


def test_concurrent_writers_keep_one_chain(pg, tmp_path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.pg_worker", f"w{n}", "40"],
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": pg, "SWITCHBOARD_VAR_DIR": str(tmp_path)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors
    done = verify(pg, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "audit chain intact: 160 events, from the start" in done.stdout
    with psycopg.connect(pg) as db:
        # One chain, no fork: 160 events, 160 distinct predecessors.
        count = db.execute("SELECT count(DISTINCT prev_hash) FROM audit_auditevent").fetchone()
    assert count == (160,)


def test_verify_audit_exits_non_zero_naming_a_changed_row(pg, tmp_path) -> None:
    write(pg, "t", 5, tmp_path)
    with psycopg.connect(pg) as db:
        target = db.execute(
            "SELECT id FROM audit_auditevent ORDER BY id OFFSET 2 LIMIT 1"
        ).fetchone()[0]
        db.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        db.execute("UPDATE audit_auditevent SET nodes = '[]' WHERE id = %s", [target])
        db.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    done = verify(pg, tmp_path)
    assert done.returncode == 1
    assert f"audit chain broken at event {target} (job.submitted" in done.stderr
    assert "changed after it was written" in done.stderr


def test_prune_audit_on_postgres(pg, tmp_path) -> None:
    write(pg, "old", 5, tmp_path, "--days-ago", "30")
    write(pg, "new", 2, tmp_path)
    archives = tmp_path / "archives"
    done = run(
        pg, "manage.py", "prune_audit", "--days", "7", "--archive-dir", str(archives), var=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "pruned 5 audit events older than 7 days" in done.stdout
    assert len(list(archives.glob("audit-*.jsonl.gz"))) == 1
    done = verify(pg, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "audit chain intact: 3 events, anchored by audit.pruned event" in done.stdout
    # The prune setting was for that transaction only.
    with (
        psycopg.connect(pg, autocommit=True) as db,
        pytest.raises(psycopg.errors.RaiseException),
    ):
        db.execute("DELETE FROM audit_auditevent")
