"""The Approval model moves from rbac to jobs, where its logic lives (``jobs.approvals``).

The rows stay: the model is taken over in the migration state (rbac's 0005 lets go of it), then
its table and index are renamed for their new app."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0006_lifecycle"),
        ("rbac", "0006_grant_is_the_guardian_permission"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Approval",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("requested_at", models.DateTimeField(auto_now_add=True)),
                        ("expires_at", models.DateTimeField()),
                        (
                            "reason",
                            models.TextField(
                                help_text=(
                                    "Why the job needs approval (which grant, how many nodes)."
                                )
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("approved", "Approved"),
                                    ("rejected", "Rejected"),
                                    ("expired", "Expired"),
                                    ("withdrawn", "Withdrawn"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("decided_at", models.DateTimeField(blank=True, null=True)),
                        ("comment", models.TextField(blank=True)),
                        (
                            "decided_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="approvals_decided",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "job",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="approval",
                                to="jobs.job",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "rbac_approval",
                        "indexes": [
                            models.Index(
                                fields=["state", "expires_at"],
                                name="rbac_approv_state_a87a9d_idx",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="approval", table=None),
        migrations.RenameIndex(
            model_name="approval",
            new_name="jobs_approval_state_idx",
            old_name="rbac_approv_state_a87a9d_idx",
        ),
    ]
