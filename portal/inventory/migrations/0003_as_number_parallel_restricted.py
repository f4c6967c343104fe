"""PostgreSQL only: ``switchboard_as_number`` may not run in parallel workers.

Its EXCEPTION block needs a subtransaction, which PostgreSQL refuses inside a parallel scan
("cannot start subtransactions during a parallel operation"): a numeric filter over a large
inventory failed whenever the planner chose a parallel plan.
"""

from typing import Any

from django.db import migrations


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER FUNCTION switchboard_as_number(text) PARALLEL RESTRICTED", params=None
        )


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER FUNCTION switchboard_as_number(text) PARALLEL SAFE", params=None
        )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0002_postgresql_search")]
    operations = [migrations.RunPython(forward, backward)]
