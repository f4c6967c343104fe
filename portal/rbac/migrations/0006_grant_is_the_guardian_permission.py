"""A grant stored once (3 of 3): the Grant row takes the field names of guardian's direct
foreign key permission models (``group``, ``content_object``, ``permission``). Apart from the
data migration before it, since PostgreSQL refuses schema changes on rows it just wrote."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("rbac", "0005_grant_takes_the_guardian_rows")]

    operations = [
        migrations.RemoveConstraint(model_name="grant", name="rbac_grant_one_per_role_agent"),
        migrations.RenameField(model_name="grant", old_name="role", new_name="group"),
        migrations.RenameField(model_name="grant", old_name="agent", new_name="content_object"),
        migrations.AlterField(
            model_name="grant",
            name="permission",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, to="auth.permission"
            ),
        ),
        migrations.AlterModelOptions(
            name="grant",
            options={"ordering": ["group__name", "content_object__name"]},
        ),
        migrations.AlterUniqueTogether(
            name="grant", unique_together={("group", "permission", "content_object")}
        ),
        migrations.AddConstraint(
            model_name="grant",
            constraint=models.UniqueConstraint(
                fields=("group", "content_object"), name="rbac_grant_one_per_role_agent"
            ),
        ),
        migrations.AlterModelOptions(
            name="action",
            options={"ordering": ["agent__name", "name"]},
        ),
        migrations.AlterModelOptions(
            name="agent",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("run_agent", "Run the agent's actions its grant lists, on its scope")
                ],
            },
        ),
    ]
