"""Indexes for the jobs list's filters (``portal.jobs.listing``), measured at 100,000 jobs
with ``bench/job_list.py``.

* (status, -id), (agent, -id), (action, -id), (created_by, -id) (from 0001): each filter reads
  newest first by id, so a page stops after its rows instead of sorting every match.
  (status, -id) replaces the index on status alone, which it covers. Agent and action each
  have their own: an (agent, action, -id) index cannot give an agent's jobs in id order, and
  SQLite sorted a quarter of the table for ``agent=service``.
* (created_at): the date range.
* jobs_job_roles (group_id, job_id): the jobs sent with a role (``role=``, and which jobs an
  operator's roles let them see) read from the index alone; the through table Django makes
  has job_id first.
* PostgreSQL only: a trigram index on ``UPPER(reason)``, the very expression Django's
  ``icontains`` filters on, so a search for a ticket (``INC-1234``) does not read every row.
  pg_trgm is a trusted extension (the database owner may create it; the audit history's
  search already does); without it the search still works, only slower.
"""

from typing import Any

from django.db import DatabaseError, migrations, models

ROLES_INDEX = "jobs_job_roles_group_job_idx"
REASON_INDEX = "jobs_job_reason_trgm"


def reason_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SAVEPOINT jobs_trgm")
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError:  # not permitted or not installed: no search index
            cursor.execute("ROLLBACK TO SAVEPOINT jobs_trgm")
            return
        cursor.execute("RELEASE SAVEPOINT jobs_trgm")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {REASON_INDEX} ON jobs_job "
            "USING gin (UPPER(reason) gin_trgm_ops)"
        )


def drop_reason_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {REASON_INDEX}", params=None)


class Migration(migrations.Migration):
    dependencies = [
        # Only the Job table is needed (0001); the chain keeps the app's history linear.
        ("jobs", "0004_roles_scope_reason_approval"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="jobs_job_status_7d017a_idx"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["status", "-id"], name="jobs_job_status_id_idx"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["agent", "-id"], name="jobs_job_agent_id_idx"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["action", "-id"], name="jobs_job_action_id_idx"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["created_at"], name="jobs_job_created_at_idx"),
        ),
        migrations.RunSQL(
            f"CREATE INDEX {ROLES_INDEX} ON jobs_job_roles (group_id, job_id)",
            f"DROP INDEX {ROLES_INDEX}",
        ),
        migrations.RunPython(reason_index, drop_reason_index),
    ]
