"""Four-eyes approval: nothing is sent until a second person approves; rejected or expired
jobs never send anything; self-approval is refused; every step is recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from agents.filters import Filter
from portal.audit.models import AuditEvent
from portal.jobs import approvals
from portal.jobs.lifecycle import RUN_JOB_TASK
from portal.jobs.models import Approval, Job
from portal.jobs.services import submit_job
from portal.rbac.services import GrantSpec, set_grant, update_role_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def requester(make_operator: Callable[..., User]) -> User:
    return make_operator(
        "req", "restarters", {"agent": "service", "approval": "above", "approval_above": 2}
    )


@pytest.fixture
def approver(make_operator: Callable[..., User]) -> User:
    user = make_operator("approver", "shift-leads")
    update_role_settings(
        "shift-leads", confirm_above=None, reason_required=False, may_approve=True, actor=None
    )
    return user


def _restart(user: User, text: str = "") -> Job:
    return submit_job(
        user=user, agent="service", action="restart", inputs={"service": "nginx"},
        filter=Filter.parse(text), filter_text=text, source=Job.Source.API,
        reason="CHG-1",  # a restart changes the nodes: a reason is required
    )  # fmt: skip


def _sent(queued_tasks) -> list[int]:
    return [c.kwargs["args"][0] for c in queued_tasks.call_args_list if c.args[0] == RUN_JOB_TASK]


def test_below_the_count_no_approval_is_needed(requester: User, fleet, queued_tasks) -> None:
    job = _restart(requester, "customer=acme and datacenter=a")  # 2 nodes
    assert job.status == Job.Status.QUEUED
    assert _sent(queued_tasks) == [job.pk]


def test_a_job_above_the_count_waits_and_sends_nothing_until_approved(
    requester: User, approver: User, fleet, queued_tasks
) -> None:
    job = _restart(requester, "customer=acme")  # 4 nodes > 2
    assert job.status == Job.Status.PENDING_APPROVAL
    assert _sent(queued_tasks) == []
    assert "4 nodes" in job.approval.reason

    with pytest.raises(approvals.ApprovalForbidden, match="your own job"):
        approvals.approve(job, requester)
    assert _sent(queued_tasks) == []

    approvals.approve(job, approver, "ok, change window CHG-7")
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert _sent(queued_tasks) == [job.pk]
    assert job.approval.decided_by == approver
    events = AuditEvent.objects.filter(job_id=job.pk).order_by("pk")
    kinds = list(events.values_list("kind", flat=True))
    assert kinds == ["job.submitted", "approval.requested", "approval.approved"]
    with pytest.raises(approvals.ApprovalError, match="already approved"):
        approvals.reject(job, approver, "too late")


def test_a_rejected_job_never_sends(requester: User, approver: User, fleet, queued_tasks) -> None:
    job = _restart(requester)
    with pytest.raises(approvals.ApprovalError, match="say why"):
        approvals.reject(job, approver, "  ")
    approvals.reject(job, approver, "not during business hours")
    job.refresh_from_db()
    assert job.status == Job.Status.REJECTED
    assert job.error == "rejected by approver: not during business hours"
    rejected = AuditEvent.objects.get(kind="approval.rejected", job_id=job.pk)
    assert rejected.actor == "approver" and rejected.data["comment"] == "not during business hours"
    assert _sent(queued_tasks) == []
    with pytest.raises(approvals.ApprovalError):
        approvals.approve(job, approver)
    assert _sent(queued_tasks) == []


def test_an_expired_approval_never_sends(
    requester: User, approver: User, fleet, queued_tasks
) -> None:
    job = _restart(requester)
    Approval.objects.filter(job=job).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(approvals.ApprovalError, match="already expired"):
        approvals.approve(job, approver)
    job.refresh_from_db()
    assert job.status == Job.Status.EXPIRED
    assert _sent(queued_tasks) == []
    assert AuditEvent.objects.filter(kind="approval.expired", job_id=job.pk).exists()


def test_the_sweep_expires_overdue_jobs(requester: User, fleet, queued_tasks) -> None:
    waiting, overdue = _restart(requester), _restart(requester)
    Approval.objects.filter(job=overdue).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert approvals.expire_overdue() == [overdue.pk]
    assert Job.objects.get(pk=overdue.pk).status == Job.Status.EXPIRED
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.PENDING_APPROVAL


def test_only_approvers_decide_and_a_revoked_grant_cannot_be_approved(
    requester: User, approver: User, make_operator: Callable[..., User], fleet, queued_tasks
) -> None:
    bystander = make_operator("bystander", "restarters")
    job = _restart(requester)
    with pytest.raises(approvals.ApprovalForbidden, match="may approve"):
        approvals.approve(job, bystander)
    set_grant(GrantSpec("restarters", "service", ("status",)), actor=None)  # restart taken away
    with pytest.raises(approvals.ApprovalError, match="may no longer run"):
        approvals.approve(job, approver)
    assert _sent(queued_tasks) == []


def test_approvers_see_the_job_and_decide_on_its_page(
    requester: User, approver: User, fleet, queued_tasks
) -> None:
    job = _restart(requester, "customer=acme")
    client = Client()
    client.force_login(approver)
    listing = client.get("/approvals/").content.decode()
    assert f"/jobs/{job.pk}/" in listing and "service restart" in listing
    assert "customer=acme" in listing and "nginx" in listing
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="decide-form"' in page
    client.post(f"/jobs/{job.pk}/decide/", {"decision": "approve", "comment": "go"})
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED
    # The requester sees the state on the job page, without the decision form.
    own = Client()
    own.force_login(requester)
    page = own.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="approval-state"' in page and "approved" in page
    assert 'id="decide-form"' not in page
    assert own.get("/approvals/").status_code == 403
