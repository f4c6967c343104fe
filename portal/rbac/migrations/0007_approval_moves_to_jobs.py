"""rbac lets go of the Approval model: jobs' 0007 took it over, rows, table and all."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rbac", "0006_grant_is_the_guardian_permission"),
        ("jobs", "0007_approval_moves_to_jobs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Approval")],
            database_operations=[],
        ),
    ]
