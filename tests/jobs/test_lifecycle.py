"""One lifecycle (issue 14): cancelled is cancelled, not sent is not "no response", a node
inside its wait is waiting, a job waiting for approval can be withdrawn, and the stored job
is checked against its typed filter (the scope ANDed once).

The runner runs for real against the real gateway class, fed by a script instead of a broker
(the integration tests cover the broker): each published batch is answered by the nodes the
test chooses, signed with their accepted keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from agents.protocol import Reply, Request
from agents.protocol.security import SigningKey, seal_reply
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent
from portal.broker.gateway import BrokerGateway, BrokerSettings
from portal.jobs import lifecycle, runner
from portal.jobs.approvals import approve
from portal.jobs.models import Approval, Job
from portal.jobs.plans import current_permit
from portal.jobs.presenters import job_counts
from portal.jobs.services import cancel_job, submit_job
from portal.jobs.validation import parse_filter_text
from portal.rbac.services import GrantSpec, set_grant, update_role_settings
from tests.conftest import FLEET, enrol_accepted, grant_every_agent

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = {identity: SigningKey.derive(identity.encode() * 2) for identity in FLEET}


class ScriptedGateway(BrokerGateway):
    """The real gateway; ``publish`` hands the request to ``answer`` instead of a broker,
    which says who replies, and calls ``after_publish`` (to cancel mid-job, for instance)."""

    connected = True

    def __init__(
        self,
        answer: Callable[[Request], Iterable[str]],
        after_publish: Callable[[int], None] = lambda number: None,
    ) -> None:
        super().__init__(BrokerSettings.from_django())
        self.answer = answer
        self.after_publish = after_publish
        self.published: list[Request] = []

    def publish(self, request: Request) -> None:
        self.published.append(request)
        for identity in self.answer(request):
            reply = Reply.for_request(request, senderid=identity, statuscode=0, statusmsg="OK")
            body = seal_reply(reply, KEYS[identity])
            self._listener.on_message(SimpleNamespace(body=body, headers={}))
        self.after_publish(len(self.published))


def run(job: Job, gateway: ScriptedGateway, progress: Callable[[Job], None] | None = None) -> Job:
    job = lifecycle.start(job.pk)
    assert job is not None
    runner._discover_and_collect(job, gateway, lambda rows: progress(job) if progress else None)
    job.refresh_from_db()
    return job


def submit(user: User, wait: float = 0.4, **options: object) -> Job:
    job = submit_job(
        user=user, agent="rpcutil", action="ping", inputs={}, filter=parse_filter_text(""),
        filter_text="", source=Job.Source.API, options=options,
    )  # fmt: skip
    # Short waits: a silent node costs the test this long per batch.
    Job.objects.filter(pk=job.pk).update(timeout=wait)
    job.refresh_from_db()
    return job


@pytest.fixture
def fleet_keys(fleet: list[str]) -> list[str]:
    enrol_accepted(KEYS)
    return fleet


def everyone(request: Request) -> list[str]:
    named = request.filter.get("identity") or list(FLEET)
    return list(named)


def test_cancelled_between_batches_ends_cancelled_and_never_sent_nodes_are_not_sent(
    operator: User, fleet_keys: list[str], queued_tasks
) -> None:
    job = submit(operator, batch_size=1)

    def cancel_after_first(number: int) -> None:
        if number == 1:
            cancel_job(Job.objects.get(pk=job.pk), operator)

    job = run(job, ScriptedGateway(everyone, cancel_after_first))
    assert job.status == Job.Status.CANCELLED
    assert job.batches_sent == 1 and job.batch_count == 3
    first, *rest = job.targeted
    assert list(job.replies.values_list("identity", flat=True)) == [first]
    assert job.no_response == [] and job.not_sent == rest
    assert job.cancelled_by == operator and job.cancelled_at is not None
    assert job.error == "cancelled by noc after batch 1 of 3"
    counts = job_counts(job)
    assert (counts["ok"], counts["no_response"], counts["not_sent"], counts["waiting"]) == (
        1, 0, 2, 0,
    )  # fmt: skip
    (asked,) = AuditEvent.objects.filter(kind=Kind.JOB_CANCEL_REQUESTED)
    assert asked.actor == "noc" and asked.outcome == "requested"
    finished = AuditEvent.objects.get(kind=Kind.JOB_FINISHED, job_id=job.pk)
    assert finished.outcome == "cancelled"
    assert finished.data["counts"]["not_sent"] == 2 and finished.data["cancelled_by"] == "noc"


def test_cancel_while_waiting_says_so_and_the_sent_silent_nodes_are_no_response(
    operator: User, fleet_keys: list[str], queued_tasks
) -> None:
    job = submit(operator, wait=5.0)  # the cancel is seen (within 0.5 s) inside the wait
    silent = FLEET[2]

    def cancel_now(number: int) -> None:
        cancel_job(Job.objects.get(pk=job.pk), operator)

    job = run(job, ScriptedGateway(lambda r: [i for i in everyone(r) if i != silent], cancel_now))
    assert job.status == Job.Status.CANCELLED
    assert job.error == "cancelled by noc while waiting for the replies to batch 1 of 1"
    assert job.no_response == [silent] and job.not_sent == []


def test_a_node_inside_its_wait_is_waiting_and_no_response_only_once_the_wait_ended(
    operator: User, fleet_keys: list[str], queued_tasks
) -> None:
    job = submit(operator, batch_size=2)
    silent = sorted(FLEET)[0]  # in the first batch
    seen: list[dict[str, int]] = []

    def watch(job: Job) -> None:
        job.refresh_from_db()
        seen.append(job_counts(job))

    def answer(request: Request) -> list[str]:
        return [identity for identity in everyone(request) if identity != silent]

    job = run(job, ScriptedGateway(answer), progress=watch)
    assert job.status == Job.Status.COMPLETED
    # While batch 1 waited for the silent node: waiting, not no response; batch 2 not sent.
    assert any(
        (c["ok"], c["waiting"], c["no_response"], c["not_sent"]) == (1, 1, 0, 1) for c in seen
    )
    # Batch 1's wait over: its silent node is no response while batch 2 runs.
    assert any(c["no_response"] == 1 and c["not_sent"] == 0 for c in seen)
    # Every node is in exactly one place at every moment.
    assert all(
        c["ok"] + c["failed"] + c["waiting"] + c["no_response"] + c["not_sent"] == c["expected"]
        for c in seen
        if c["expected"]
    )
    assert job.no_response == [silent] and job.not_sent == [] and job.waiting_until is None
    final = job_counts(job)
    assert (final["ok"], final["waiting"], final["no_response"], final["not_sent"]) == (2, 0, 1, 0)


def test_the_wait_has_a_deadline_the_page_counts_down_to(
    operator: User, fleet_keys: list[str], queued_tasks
) -> None:
    job = submit(operator)
    deadlines = []

    def watch(job: Job) -> None:
        job.refresh_from_db()
        if job.waiting_until:
            deadlines.append((job.waiting_until - job.started_at).total_seconds())

    run(job, ScriptedGateway(lambda r: []), progress=watch)
    assert deadlines and all(0 < seconds < 5 for seconds in deadlines)


@pytest.fixture
def four_eyes(operator: User) -> User:
    """``operator``'s role needs approval for every job; returns an approver."""
    set_grant(GrantSpec("ops", "rpcutil", None, "", approval="always"), actor=None)
    approver = User.objects.create_user("approver", password="pw-approver-1")
    approver.groups.add(grant_every_agent("approvers"))
    update_role_settings("approvers", confirm_above=None, reason_required=False,
                         may_approve=True, actor=None)  # fmt: skip
    return approver


def test_the_requester_withdraws_a_job_waiting_for_approval(
    operator: User, fleet_keys: list[str], four_eyes: User, queued_tasks
) -> None:
    job = submit(operator)
    assert job.status == Job.Status.PENDING_APPROVAL
    client = Client()
    client.force_login(four_eyes)
    assert f"/jobs/{job.pk}/" in client.get("/approvals/").content.decode()

    job = cancel_job(job, operator)
    assert job.status == Job.Status.WITHDRAWN
    assert job.approval.state == Approval.State.WITHDRAWN
    assert f"/jobs/{job.pk}/" not in client.get("/approvals/").content.decode()
    with pytest.raises(Exception, match="already withdrawn"):
        approve(job, four_eyes)
    queued_tasks.assert_not_called()  # never sent
    event = AuditEvent.objects.get(kind=Kind.JOB_WITHDRAWN)
    assert event.actor == "noc" and event.job_id == job.pk
    assert AuditEvent.objects.get(kind=Kind.JOB_FINISHED, job_id=job.pk).outcome == "withdrawn"


def test_withdraw_from_the_command_line(
    operator: User, fleet_keys: list[str], four_eyes: User, queued_tasks, capsys
) -> None:
    job = submit(operator)
    call_command("cancel_job", str(job.pk), "--user", "noc")
    assert "withdrawn before approval" in capsys.readouterr().out
    job.refresh_from_db()
    assert job.status == Job.Status.WITHDRAWN


def test_a_role_given_the_right_may_cancel_anyones_job(
    operator: User, other_operator: User, fleet_keys: list[str], queued_tasks
) -> None:
    job = submit(operator)
    client = Client()
    client.force_login(other_operator)
    other_operator.groups.add(grant_every_agent("ops"))  # sees the job: a shared role
    assert client.post(f"/jobs/{job.pk}/cancel/", {"confirmed": "1"}).status_code == 403
    grant_every_agent("shift-leads")
    other_operator.groups.add(grant_every_agent("shift-leads"))
    update_role_settings("shift-leads", confirm_above=None, reason_required=False,
                         may_approve=False, may_cancel_any=True, actor=None)  # fmt: skip
    assert client.post(f"/jobs/{job.pk}/cancel/", {"confirmed": "1"}).status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and job.cancelled_by == other_operator


def test_the_stored_job_is_authorized_on_its_typed_filter_the_scope_added_once(
    fleet_keys: list[str], queued_tasks
) -> None:
    user = User.objects.create_user("scoped", password="pw-scoped-12")
    user.groups.add(grant_every_agent("acme-only", scope="customer=acme"))
    job = submit_job(
        user=user, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text("datacenter=a"), filter_text="datacenter=a", source="api",
    )  # fmt: skip
    permit = current_permit(job)
    assert permit.effective_filter.to_dict() == job.filter
    assert permit.effective_filter.describe().count("customer==acme") == 1
