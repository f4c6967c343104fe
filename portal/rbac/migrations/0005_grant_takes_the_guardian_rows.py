"""A grant stored once (2 of 3, the data): each Grant takes the generic guardian rows that went
with it (``run_agent`` on the Agent: all actions; ``run_action`` on each Action: those
actions) and points at the ``run_agent`` permission; the generic rows are then deleted, so no
second copy of a grant is left. Back: the generic rows are written again from the grants."""

from django.db import migrations

RUN_AGENT = "run_agent"
RUN_ACTION = "run_action"


def _permission(apps, model: str, codename: str, name: str):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="rbac", model=model)
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    return permission


def carry_generic_permissions(apps, schema_editor) -> None:
    Grant = apps.get_model("rbac", "Grant")
    Action = apps.get_model("rbac", "Action")
    GroupObjectPermission = apps.get_model("guardian", "GroupObjectPermission")
    run_agent = _permission(apps, "agent", RUN_AGENT, "Run the agent's actions")
    run_action = _permission(apps, "action", RUN_ACTION, "Run the action")
    for grant in Grant.objects.all():
        granted = GroupObjectPermission.objects.filter(
            group_id=grant.role_id, permission=run_action
        ).values_list("object_pk", flat=True)
        whole_agent = GroupObjectPermission.objects.filter(
            group_id=grant.role_id, permission=run_agent, object_pk=str(grant.agent_id)
        ).exists()
        grant.permission = run_agent
        grant.all_actions = whole_agent
        grant.save(update_fields=["permission", "all_actions"])
        if not whole_agent:
            ids = [int(pk) for pk in granted]
            grant.actions.set(Action.objects.filter(agent_id=grant.agent_id, pk__in=ids))
    GroupObjectPermission.objects.filter(permission__in=[run_agent, run_action]).delete()


def restore_generic_permissions(apps, schema_editor) -> None:
    Grant = apps.get_model("rbac", "Grant")
    GroupObjectPermission = apps.get_model("guardian", "GroupObjectPermission")
    run_agent = _permission(apps, "agent", RUN_AGENT, "Run every action of the agent")
    run_action = _permission(apps, "action", RUN_ACTION, "Run the action")
    for grant in Grant.objects.all():
        if grant.all_actions:
            GroupObjectPermission.objects.get_or_create(
                group_id=grant.role_id,
                permission=run_agent,
                content_type_id=run_agent.content_type_id,
                object_pk=str(grant.agent_id),
            )
        for action in grant.actions.all():
            GroupObjectPermission.objects.get_or_create(
                group_id=grant.role_id,
                permission=run_action,
                content_type_id=run_action.content_type_id,
                object_pk=str(action.pk),
            )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("rbac", "0004_grant_lists_its_actions"),
    ]

    operations = [
        migrations.RunPython(carry_generic_permissions, restore_generic_permissions),
    ]
