"""Every door refuses what the grants do not allow: form, API, CLI, task, WebSocket, pages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from agents.filters import Filter
from portal.accounts.services import issue_token
from portal.audit.models import AuditEvent
from portal.jobs import runner
from portal.jobs.catalog import JobForbidden
from portal.jobs.consumers import CLOSE_FORBIDDEN
from portal.jobs.models import Job
from portal.jobs.routing import websocket_urlpatterns
from portal.jobs.services import submit_job
from portal.rbac.services import revoke_grant

pytestmark = pytest.mark.django_db(transaction=True)


def _api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user.username)}")
    return client


def _submit(user: User, agent: str = "rpcutil", action: str = "ping", text: str = "") -> Job:
    return submit_job(
        user=user, agent=agent, action=action, inputs={}, filter=Filter.parse(text),
        filter_text=text, source=Job.Source.API,
    )  # fmt: skip


# -- refused outside the grants, on each path -----------------------------------------------------


def test_form_refuses_and_does_not_offer_an_action_outside_the_grants(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    client = Client()
    client.force_login(acme_operator)
    page = client.get("/jobs/new/").content.decode()
    assert 'value="service.restart"' in page
    assert 'value="service.stop"' not in page
    assert 'value="package.install"' not in page
    response = client.post("/jobs/new/", {"agent_action": "service.stop", "filter": ""})
    assert response.status_code == 403
    assert "none of your roles may run service stop" in response.content.decode()
    assert not Job.objects.exists()
    queued_tasks.assert_not_called()


def test_api_refuses_with_403_and_stores_nothing(acme_operator: User, queued_tasks) -> None:
    response = _api(acme_operator).post(
        "/api/jobs/", {"agent": "package", "action": "install", "inputs": {"package": "vim"}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 403
    assert response.json() == {"errors": {"action": "none of your roles may run package install"}}
    assert not Job.objects.exists()
    queued_tasks.assert_not_called()


def test_cli_refuses_with_the_reason(acme_operator: User) -> None:
    with pytest.raises(CommandError, match="none of your roles may run service stop"):
        call_command("rpc", "service", "stop", "service=nginx", "--user", acme_operator.username)
    assert not Job.objects.exists()


def test_task_refuses_a_job_whose_grant_was_revoked_after_submit(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    job = _submit(acme_operator)
    queued_tasks.assert_called_once()
    revoke_grant("acme-noc", "rpcutil", actor=None)
    # The worker runs it now: refused before any connection to a broker is even tried.
    ran = runner.run_job(job.pk)
    assert ran is not None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == "refused when it was about to run: none of your roles may run rpcutil ping"
    assert job.requestid == "" and job.targeted == []  # nothing was sent
    finished = AuditEvent.objects.get(kind="job.finished", job_id=job.pk)
    assert finished.outcome == "failed" and finished.actor == "acmeop"
    assert "refused when it was about to run" in finished.data["error"]
    submitted = AuditEvent.objects.get(kind="job.submitted", job_id=job.pk)
    assert submitted.data["effective_filter"] == "customer==acme"
    assert submitted.roles == ["acme-noc"]


def test_websocket_refuses_a_watcher_of_another_roles_job(
    fleet: list[str], acme_operator: User, make_operator: Callable[..., User], queued_tasks
) -> None:
    outsider = make_operator("globexop", "globex-noc", {"agent": "rpcutil"})
    colleague = make_operator("acmeop2", "acme-noc")
    job = _submit(acme_operator)

    async def connect(user: User) -> tuple[bool, int | None]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/jobs/{job.pk}/"
        )
        communicator.scope["user"] = user
        result = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return result

    assert async_to_sync(connect)(outsider) == (False, CLOSE_FORBIDDEN)
    assert async_to_sync(connect)(colleague)[0] is True


def test_pages_and_api_hide_another_roles_job_but_managers_read_all(
    fleet: list[str], acme_operator: User, make_operator: Callable[..., User], queued_tasks
) -> None:
    outsider = make_operator("globexop", "globex-noc", {"agent": "rpcutil"})
    manager = User.objects.create_user("mgr", password="x")
    manager.groups.add(Group.objects.get(name="manager"))
    job = _submit(acme_operator)
    for user, visible in ((outsider, False), (manager, True), (acme_operator, True)):
        client = Client()
        client.force_login(user)
        assert client.get(f"/jobs/{job.pk}/").status_code == (200 if visible else 404)
        assert (f"/jobs/{job.pk}/" in client.get("/").content.decode()) is visible
        assert _api(user).get(f"/api/jobs/{job.pk}/").status_code == (200 if visible else 404)
    # A manager reads, but may not run anything.
    with pytest.raises(JobForbidden):
        _submit(manager)


# -- scopes ---------------------------------------------------------------------------------------


def test_a_scoped_job_is_sent_with_the_scope_and_shows_it(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    job = _submit(acme_operator, text="role=db or customer=globex")
    assert job.filter_text == "role=db or customer=globex"
    assert job.scope == "customer==acme"
    sent = Filter.from_dict(job.filter)
    assert sent.describe() == "(role==db or customer==globex) and customer==acme"
    assert sorted(runner.discover_from_inventory(sent)) == ["acme-a-db", "acme-b-db"]


def test_the_confirmation_page_shows_the_scope_and_the_scoped_count(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    client = Client()
    client.force_login(acme_operator)
    page = client.post(
        "/jobs/new/", {"agent_action": "rpcutil.ping", "filter": ""}
    ).content.decode()
    assert 'id="confirm-scope"' in page and "customer==acme" in page
    assert "on 4 nodes?" in page  # the 4 acme nodes, not all 8


def test_the_node_list_of_the_rerun_of_a_scoped_job_stays_scoped(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    job = _submit(acme_operator, text="identity:globex-a-web or identity:acme-a-web")
    assert runner.discover_from_inventory(Filter.from_dict(job.filter)) == ["acme-a-web"]


# -- per-role form settings -----------------------------------------------------------------------


def test_a_role_can_require_a_reason_on_every_path(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    from portal.rbac.services import update_role_settings

    update_role_settings(
        "acme-noc", confirm_above=2, reason_required=True, may_approve=False, actor=None
    )
    response = _api(acme_operator).post(
        "/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "reason": "your role asks for a reason or ticket reference"
    }
    with pytest.raises(CommandError, match="reason"):
        call_command("rpc", "rpcutil", "ping", "--user", acme_operator.username)
    client = Client()
    client.force_login(acme_operator)
    form = {
        "agent_action": "rpcutil.ping",
        "filter": "",
        "confirmed": "1",
        "typed_count": "4",
        "planned_count": "4",
    }
    page = client.post("/jobs/new/", form)
    assert page.status_code == 400
    assert "your role asks for a reason" in page.content.decode()
    # The role's threshold (2) asks for the count to be typed for 4 nodes.
    page = client.post("/jobs/new/", dict(form, typed_count="", reason="INC-42"))
    assert "type 4 to run on 4 nodes" in page.content.decode()
    response = client.post("/jobs/new/", dict(form, reason="INC-42"))
    assert response.status_code == 302
    assert Job.objects.get().reason == "INC-42"
