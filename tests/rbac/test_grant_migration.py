"""The migrations that made a grant one row keep every grant and approval they found.

Before them a grant was a Grant row plus generic django-guardian rows (``run_agent`` on the
Agent, ``run_action`` on each Action) and the Approval model lived in rbac. The test migrates a
database back to that shape, writes grants and an approval the old way, and migrates forward.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

GUARDIAN = ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more")
BEFORE = [("rbac", "0003_approval_withdrawn"), ("jobs", "0006_lifecycle"), GUARDIAN]
AFTER = [("rbac", "0007_approval_moves_to_jobs"), ("jobs", "0007_approval_moves_to_jobs"), GUARDIAN]


def _migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_old_grants_and_approvals_survive_the_move() -> None:
    try:
        _check_the_move()
    finally:
        # Whatever happened, the next tests find the schema the code expects.
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def _check_the_move() -> None:
    old = _migrate(BEFORE)
    Group = old.get_model("auth", "Group")
    User = old.get_model("auth", "User")
    Permission = old.get_model("auth", "Permission")
    ContentType = old.get_model("contenttypes", "ContentType")
    Agent = old.get_model("rbac", "Agent")
    Action = old.get_model("rbac", "Action")
    Grant = old.get_model("rbac", "Grant")
    OldApproval = old.get_model("rbac", "Approval")
    Job = old.get_model("jobs", "Job")
    GroupObjectPermission = old.get_model("guardian", "GroupObjectPermission")

    agent_type, _ = ContentType.objects.get_or_create(app_label="rbac", model="agent")
    action_type, _ = ContentType.objects.get_or_create(app_label="rbac", model="action")
    run_agent, _ = Permission.objects.get_or_create(
        content_type=agent_type, codename="run_agent", defaults={"name": "run agent"}
    )
    run_action, _ = Permission.objects.get_or_create(
        content_type=action_type, codename="run_action", defaults={"name": "run action"}
    )
    service = Agent.objects.create(name="service-x")
    status = Action.objects.create(agent=service, name="status")
    restart = Action.objects.create(agent=service, name="restart")
    Action.objects.create(agent=service, name="stop")
    whole, some = Group.objects.create(name="whole"), Group.objects.create(name="some")
    Grant.objects.create(role=whole, agent=service, all_actions=True, scope="")
    Grant.objects.create(role=some, agent=service, scope="customer=acme", approval="always")
    GroupObjectPermission.objects.create(
        group=whole, permission=run_agent, content_type=agent_type, object_pk=str(service.pk)
    )
    for action in (status, restart):
        GroupObjectPermission.objects.create(
            group=some, permission=run_action, content_type=action_type, object_pk=str(action.pk)
        )
    requester = User.objects.create(username="requester")
    job = Job.objects.create(
        agent="service-x",
        action="status",
        created_by=requester,
        source="web",
        collective="mcollective",
        timeout=5,
        status="pending_approval",
    )
    OldApproval.objects.create(job=job, expires_at="2030-01-01T00:00:00Z", reason="10 nodes")

    new = _migrate(AFTER)
    NewGrant = new.get_model("rbac", "Grant")
    grants = {g.group.name: g for g in NewGrant.objects.select_related("group", "permission")}
    assert grants["whole"].all_actions and not grants["whole"].actions.exists()
    assert not grants["some"].all_actions
    assert sorted(grants["some"].actions.values_list("name", flat=True)) == ["restart", "status"]
    assert grants["some"].scope == "customer=acme" and grants["some"].approval == "always"
    assert {g.permission.codename for g in grants.values()} == {"run_agent"}
    # The generic guardian rows were carried into the grants, not left as a second copy.
    assert not new.get_model("guardian", "GroupObjectPermission").objects.exists()
    approval = new.get_model("jobs", "Approval").objects.get()
    assert approval.job_id == job.pk and approval.reason == "10 nodes"
    assert approval.state == "pending"
    assert "jobs_approval" in connection.introspection.table_names()
    assert "rbac_approval" not in connection.introspection.table_names()

    # And back: the generic rows come back from the grants.
    back = _migrate(BEFORE)
    restored = back.get_model("guardian", "GroupObjectPermission").objects
    assert restored.filter(group__name="whole", permission__codename="run_agent").count() == 1
    assert restored.filter(group__name="some", permission__codename="run_action").count() == 2
    assert back.get_model("rbac", "Approval").objects.get().reason == "10 nodes"
