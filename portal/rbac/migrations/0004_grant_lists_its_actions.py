"""A grant stored once (1 of 3, the new columns): a Grant lists its actions itself, and will
be guardian's object permission ``run_agent`` on the Agent (0005 carries the data, 0006
renames the fields). Each step is its own migration: PostgreSQL refuses a schema change in the
transaction that wrote rows with deferred foreign keys."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("rbac", "0003_approval_withdrawn"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="actions",
            field=models.ManyToManyField(
                blank=True,
                help_text="With all_actions off: these.",
                related_name="grants",
                to="rbac.action",
            ),
        ),
        migrations.AddField(
            model_name="grant",
            name="permission",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                to="auth.permission",
            ),
        ),
    ]
