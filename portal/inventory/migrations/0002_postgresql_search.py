"""PostgreSQL only: GIN indexes on facts and classes, and the number rule the filters use.

Nothing here on SQLite (the embedded profile evaluates filters through SQL functions
registered per connection, see ``apps.py``), so the model state does not change either.
"""

from typing import Any

from django.db import migrations

# Python's str.isspace() characters: the nodes strip these before reading a number.
_PY_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# agents.filters.terms.as_number in SQL: the float8 a fact's text stands for, or NULL when it
# is not a number. Never raises: float8 overflow is NULL (Python: inf, not a number) and
# underflow is 0 (Python: 0.0).
AS_NUMBER = r"""
CREATE OR REPLACE FUNCTION switchboard_as_number(raw text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    t text := btrim(raw, %(space)s);
    int_part text;
    frac_part text;
    exponent numeric;
    magnitude numeric;
BEGIN
    IF t !~ '^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$' THEN
        RETURN NULL;
    END IF;
    RETURN t::double precision;
EXCEPTION WHEN numeric_value_out_of_range THEN
    int_part := ltrim(substring(t from '^[+-]?([0-9]*)'), '0');
    frac_part := coalesce(substring(t from '\.([0-9]*)'), '');
    exponent := coalesce(substring(t from '[eE]([+-]?[0-9]+)$')::numeric, 0);
    IF int_part <> '' THEN
        magnitude := length(int_part) - 1 + exponent;
    ELSE
        magnitude := exponent - (length(frac_part) - length(ltrim(frac_part, '0')) + 1);
    END IF;
    RETURN CASE WHEN magnitude < 0 THEN 0 ELSE NULL END;
END
$fn$;
"""

FORWARD = [
    "CREATE INDEX IF NOT EXISTS inventory_node_facts_gin "
    "ON inventory_node USING gin (facts jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS inventory_node_classes_gin "
    "ON inventory_node USING gin (classes jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS inventory_node_agents_gin "
    "ON inventory_node USING gin (agents jsonb_path_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS inventory_node_facts_gin",
    "DROP INDEX IF EXISTS inventory_node_classes_gin",
    "DROP INDEX IF EXISTS inventory_node_agents_gin",
    "DROP FUNCTION IF EXISTS switchboard_as_number(text)",
]


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    quoted = schema_editor.quote_value(_PY_SPACE)
    schema_editor.execute(AS_NUMBER.replace("%(space)s", quoted), params=None)
    for sql in FORWARD:
        schema_editor.execute(sql, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in BACKWARD:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
