"""Who may cancel a job, on every path: its requester or an admin; a manager, who reads every
job but runs nothing, may not (issue 14: a manager could cancel anyone's running job)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client

from portal.accounts.services import issue_token
from portal.audit.models import AuditEvent
from portal.jobs.lifecycle import start
from portal.jobs.models import Job
from portal.jobs.services import submit_job
from portal.jobs.validation import parse_filter_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_job(operator: User, queued_tasks) -> Job:
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    started = start(job.pk)
    assert started is not None
    return started


@pytest.fixture
def manager() -> User:
    user = User.objects.create_user("mgr", password="pw-mgr-123")
    user.groups.add(Group.objects.get_or_create(name="manager")[0])
    return user


def cancel_by(path: str, user: User, job: Job) -> int:
    if path == "page":
        client = Client()
        client.force_login(user)
        return client.post(f"/jobs/{job.pk}/cancel/", {"confirmed": "1"}).status_code
    if path == "api":
        client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(user.username)}")
        return client.post(f"/api/jobs/{job.pk}/cancel/").status_code
    try:
        call_command("cancel_job", str(job.pk), "--user", user.username)
    except CommandError as exc:
        assert "may not cancel" in str(exc)
        return 403
    return 202


PATHS = {"page": 302, "api": 202, "cli": 202}


@pytest.mark.parametrize("path", PATHS)
def test_a_manager_may_read_but_not_cancel(
    fleet: list[str], path: str, manager: User, running_job: Job
) -> None:
    assert cancel_by(path, manager, running_job) == 403
    running_job.refresh_from_db()
    assert not running_job.cancel_requested
    assert not AuditEvent.objects.filter(kind="job.cancel_requested").exists()
    page = Client()
    page.force_login(manager)
    html = page.get(f"/jobs/{running_job.pk}/").content.decode()
    assert 'id="cancel-form"' in html and "data-forbidden" in html


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("who", ["requester", "admin"])
def test_the_requester_and_an_admin_may_cancel(
    fleet: list[str], path: str, who: str, operator: User, admin_user: User, running_job: Job
) -> None:
    user = operator if who == "requester" else admin_user
    assert cancel_by(path, user, running_job) == PATHS[path]
    running_job.refresh_from_db()
    assert running_job.cancel_requested
    event = AuditEvent.objects.get(kind="job.cancel_requested")
    assert event.actor == user.username
