"""PostgreSQL only: the append-only trigger and the indexes behind the timeline's filters.

* ``audit_event_append_only``: refuses UPDATE and DELETE on audit_auditevent. Two exceptions:
  a DELETE while the transaction has ``switchboard.audit_prune`` set to ``on`` (only
  ``services.prune_events`` sets it, with SET LOCAL semantics, after archiving), and the
  UPDATE that Django's ``on_delete=SET_NULL`` makes when an account is deleted (only
  ``actor_user_id`` becomes NULL; the recorded username stays, and it is not hashed).
* GIN indexes on ``nodes`` and ``roles`` (jsonb @> containment: a node's history, a role
  filter) and a trigram index on summary + data text (the search), from pg_trgm.

Nothing on SQLite: the embedded profile's database file is the operator's own.
"""

from typing import Any

from django.db import DatabaseError, migrations

TRIGGER = r"""
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('switchboard.audit_prune', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused', OLD.id
            USING HINT = 'Old events are removed only by manage.py prune_audit.';
    END IF;
    IF NEW.actor_user_id IS NULL
       AND (to_jsonb(NEW) - 'actor_user_id') = (to_jsonb(OLD) - 'actor_user_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE of event % refused', OLD.id
        USING HINT = 'Audit events are never changed; record a new event instead.';
END
$fn$;

DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""

INDEXES = [
    "CREATE INDEX IF NOT EXISTS audit_nodes_gin "
    "ON audit_auditevent USING gin (nodes jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS audit_roles_gin "
    "ON audit_auditevent USING gin (roles jsonb_path_ops)",
]
# Must be the very expression ``querysets.PG_SEARCH_TEXT`` filters on.
SEARCH_INDEX = (
    "CREATE INDEX IF NOT EXISTS audit_search_trgm ON audit_auditevent "
    "USING gin ((summary || ' ' || data::text) gin_trgm_ops)"
)

BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
    "DROP INDEX IF EXISTS audit_nodes_gin",
    "DROP INDEX IF EXISTS audit_roles_gin",
    "DROP INDEX IF EXISTS audit_search_trgm",
]


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(TRIGGER, params=None)
    for sql in INDEXES:
        schema_editor.execute(sql, params=None)
    # pg_trgm ships with PostgreSQL and is a trusted extension (the database owner may create
    # it); the search still works without it, only slower, so a refusal is not fatal.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SAVEPOINT audit_trgm")
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError:  # not permitted or not installed: no search index
            cursor.execute("ROLLBACK TO SAVEPOINT audit_trgm")
            return
        cursor.execute("RELEASE SAVEPOINT audit_trgm")
    schema_editor.execute(SEARCH_INDEX, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in BACKWARD:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
