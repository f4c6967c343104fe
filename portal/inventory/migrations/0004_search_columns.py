"""Search columns on Node (``fact_text``, ``fact_number``, ``fact_lists``), backfilled from the
stored facts.

On PostgreSQL also: GIN indexes on the three (they answer ``==``/``!=``, so the one on
``facts`` goes); ``jsonb_ops`` GIN indexes on classes and agents (``?|`` for name regexes);
``inventory_node_name``, the distinct class and agent names, kept by statement triggers so
every writer (the ORM, COPY, psql) fills it; and ``switchboard_as_number`` goes, no longer
used (numbers are computed in Python now).
"""

import importlib
from typing import Any

from django.db import migrations, models

from portal.inventory.search import SEARCH_FIELDS, search_columns

BATCH = 1000

# Superset semantics: names are added, never removed (a class regex reads the names that
# match, then finds the nodes holding any of them; a name no node holds costs nothing).
NAMES_SQL = [
    # Unique through a hash index, not a btree: a node may send a name longer than a btree
    # entry can hold (~2.7 kB), and one such name must not fail its whole registration batch.
    # A kind (class, agent) has no ':', so kind:name tells the pairs apart.
    """
    CREATE TABLE inventory_node_name (
        kind text NOT NULL,
        name text NOT NULL,
        EXCLUDE USING hash ((kind || ':' || name) WITH =)
    )
    """,
    """
    CREATE FUNCTION switchboard_record_node_names() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
        -- Sorted, so two writers adding the same new names take their locks in one order.
        INSERT INTO inventory_node_name (kind, name)
        SELECT DISTINCT k.kind, e.name
        FROM written AS w
        CROSS JOIN LATERAL (VALUES ('class', w.classes), ('agent', w.agents)) AS k(kind, names)
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(k.names) = 'array' THEN k.names ELSE '[]'::jsonb END
        ) AS x(j)
        CROSS JOIN LATERAL (SELECT x.j #>> '{}') AS e(name)
        WHERE jsonb_typeof(x.j) = 'string'
        ORDER BY 1, 2
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $fn$
    """,
    "CREATE TRIGGER inventory_node_names_on_insert AFTER INSERT ON inventory_node "
    "REFERENCING NEW TABLE AS written FOR EACH STATEMENT "
    "EXECUTE FUNCTION switchboard_record_node_names()",
    "CREATE TRIGGER inventory_node_names_on_update AFTER UPDATE ON inventory_node "
    "REFERENCING NEW TABLE AS written FOR EACH STATEMENT "
    "EXECUTE FUNCTION switchboard_record_node_names()",
    # The rows already there, through the same function's query.
    """
    INSERT INTO inventory_node_name (kind, name)
    SELECT DISTINCT k.kind, x.j #>> '{}'
    FROM inventory_node AS w
    CROSS JOIN LATERAL (VALUES ('class', w.classes), ('agent', w.agents)) AS k(kind, names)
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(k.names) = 'array' THEN k.names ELSE '[]'::jsonb END
    ) AS x(j)
    WHERE jsonb_typeof(x.j) = 'string'
    ON CONFLICT DO NOTHING
    """,
]
# fastupdate off: the preview reads these indexes interactively, and a pending list (up to
# 4 MB until autovacuum merges it) is scanned by every query and makes the planner prefer
# sequential scans (customer=acme at 100,000 nodes: 71 ms with a fresh pending list, 25 ms
# without). Registrations pay the index update at write time instead, in batches.
INDEXES = {  # name: indexed expression
    "inventory_node_fact_text_gin": "fact_text jsonb_path_ops",
    "inventory_node_fact_number_gin": "fact_number jsonb_path_ops",
    "inventory_node_fact_lists_gin": "fact_lists jsonb_path_ops",
    # jsonb_ops, not jsonb_path_ops: it also answers ?| (class and agent regexes).
    "inventory_node_classes_keys_gin": "classes",
    "inventory_node_agents_keys_gin": "agents",
}
FORWARD = [
    "DROP INDEX IF EXISTS inventory_node_facts_gin",
    "DROP INDEX IF EXISTS inventory_node_classes_gin",
    "DROP INDEX IF EXISTS inventory_node_agents_gin",
    *(
        f"CREATE INDEX {name} ON inventory_node USING gin ({expression}) WITH (fastupdate = off)"
        for name, expression in INDEXES.items()
    ),
    *NAMES_SQL,
    "DROP FUNCTION IF EXISTS switchboard_as_number(text)",
]
BACKWARD = [
    "DROP TRIGGER IF EXISTS inventory_node_names_on_insert ON inventory_node",
    "DROP TRIGGER IF EXISTS inventory_node_names_on_update ON inventory_node",
    "DROP FUNCTION IF EXISTS switchboard_record_node_names()",
    "DROP TABLE IF EXISTS inventory_node_name",
    *(f"DROP INDEX IF EXISTS {name}" for name in INDEXES),
]


def backfill_search_columns(apps: Any, schema_editor: Any) -> None:
    node_model = apps.get_model("inventory", "Node")
    nodes = node_model.objects.using(schema_editor.connection.alias)
    vendor = schema_editor.connection.vendor
    batch = []
    for node in nodes.only("pk", "facts").order_by("pk").iterator(chunk_size=BATCH):
        for name, value in search_columns(node.facts, vendor).items():
            setattr(node, name, value)
        batch.append(node)
        if len(batch) == BATCH:
            nodes.bulk_update(batch, SEARCH_FIELDS)
            batch = []
    if batch:
        nodes.bulk_update(batch, SEARCH_FIELDS)


def postgresql_forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in FORWARD:
        schema_editor.execute(sql, params=None)


def postgresql_backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in BACKWARD:
        schema_editor.execute(sql, params=None)
    # What 0002 and 0003 made: the facts/classes/agents indexes and the number function.
    for name in ("0002_postgresql_search", "0003_as_number_parallel_restricted"):
        importlib.import_module(f"portal.inventory.migrations.{name}").forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0003_as_number_parallel_restricted")]

    operations = [
        migrations.AddField(
            model_name="node",
            name="fact_text",
            field=models.JSONField(
                default=dict,
                editable=False,
                help_text="Each scalar fact's text as filters read it.",
            ),
        ),
        migrations.AddField(
            model_name="node",
            name="fact_number",
            field=models.JSONField(
                default=dict,
                editable=False,
                help_text="Each scalar fact's number, if it reads as one.",
            ),
        ),
        migrations.AddField(
            model_name="node",
            name="fact_lists",
            field=models.JSONField(
                default=dict,
                editable=False,
                help_text="Each list fact's elements as filters read them.",
            ),
        ),
        migrations.RunPython(backfill_search_columns, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(postgresql_forward, postgresql_backward, elidable=False),
    ]
