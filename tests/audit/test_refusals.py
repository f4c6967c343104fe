"""Every refusal on the record: refused jobs (form, API, CLI), denied pages and API calls, the
flood guard, cancels, and the audit export by API token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import F
from django.test import Client

from agents.filters import Filter
from agents.protocol import Registration
from portal.accounts.tokens import create_token
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent, RefusalWindow
from portal.inventory.services import record_registrations
from portal.jobs.catalog import JobForbidden
from portal.jobs.forms import input_field_name
from portal.jobs.models import Job
from portal.jobs.plans import plan_job
from portal.jobs.services import cancel_job, submit_job
from portal.rbac.services import GrantSpec, set_grant, sync_catalog

# -- who is who -----------------------------------------------------------------------------------

ACME_NOC = "acme-noc"


def make_user(role: str) -> User:
    """``admin`` (superuser), ``manager`` (reads, runs nothing), ``operator`` (acme-noc: rpcutil
    and service status/restart, only on customer=acme)."""
    if role == "admin":
        return User.objects.create_superuser("root", password="pw-root-123")
    if role == "manager":
        user = User.objects.create_user("mgr", password="pw-mgr-123")
        user.groups.add(Group.objects.get_or_create(name="manager")[0])
        return user
    sync_catalog()
    user = User.objects.create_user("acmeop", password="pw-acmeop-123")
    user.groups.add(Group.objects.get_or_create(name=ACME_NOC)[0])
    set_grant(GrantSpec(ACME_NOC, "rpcutil", None, "customer=acme"), actor=None)
    set_grant(GrantSpec(ACME_NOC, "service", ("status", "restart"), "customer=acme"), actor=None)
    return user


def token_for(user: User) -> str:
    return create_token(user, "test", None, actor=None).secret


def events(kind: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("id"))


# -- refused jobs: (role x path) from one table ---------------------------------------------------


@dataclass(frozen=True)
class JobAttempt:
    role: str
    agent: str
    action: str
    filter: str
    refusal: str | None  # the policy's reason, or None when the role may run it
    inputs: tuple[tuple[str, str], ...] = ()


ATTEMPTS = [
    JobAttempt("operator", "service", "stop", "customer=globex and role=web",
               "none of your roles may run service stop"),
    JobAttempt("operator", "package", "install", "", "none of your roles may run package install"),
    JobAttempt("manager", "rpcutil", "ping", "role=web", "none of your roles may run rpcutil ping"),
    JobAttempt("operator", "rpcutil", "ping", "role=web", None),
    JobAttempt("admin", "service", "stop", "role=web", None, (("service", "nginx"),)),
]  # fmt: skip


@pytest.fixture
def fleet(db: None) -> None:
    """Two web nodes, one per customer: a permitted attempt has a node to target."""
    record_registrations(
        [
            Registration(
                identity=f"{customer}-web",
                collectives=["mcollective"],
                facts={"customer": customer, "role": "web"},
                classes=["base"],
                agents=["rpcutil", "service"],
                msgtime=time.time(),
            )
            for customer in ("acme", "globex")
        ]
    )


# Every attempt states why: an action that changes nodes needs a reason, and a refusal must be
# the policy's, not a missing reason's.
REASON = "CHG-7"


def attempt_by_form(user: User, attempt: JobAttempt) -> int:
    client = Client()
    client.force_login(user)
    form = {"agent_action": f"{attempt.agent}.{attempt.action}", "filter": attempt.filter}
    form |= {input_field_name(attempt.agent, attempt.action, k): v for k, v in attempt.inputs}
    return client.post("/jobs/new/", form).status_code


def attempt_by_api(user: User, attempt: JobAttempt) -> int:
    client = Client(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    payload = {"agent": attempt.agent, "action": attempt.action, "filter": attempt.filter}
    payload["inputs"] = dict(attempt.inputs)
    payload["reason"] = REASON
    return client.post("/api/jobs/", payload, content_type="application/json").status_code


def attempt_by_cli(user: User, attempt: JobAttempt) -> int:
    words = [f"{k}={v}" for k, v in attempt.inputs]
    words += ["-S", attempt.filter] if attempt.filter else []
    # A permitted job would run in this process: the run is not what is tested here.
    with mock.patch("portal.jobs.runner.run_job"):
        try:
            call_command(
                "rpc", attempt.agent, attempt.action, *words,
                "--user", user.username, "--reason", REASON,
            )  # fmt: skip
        except CommandError as exc:
            return 403 if isinstance(exc.__cause__, JobForbidden) else 400
    return 201


PATHS: dict[str, tuple[Callable[[User, JobAttempt], int], str, int]] = {
    # path: (how, the job's source, what a permitted attempt answers)
    "form": (attempt_by_form, Job.Source.WEB, 200),  # the confirmation page
    "api": (attempt_by_api, Job.Source.API, 201),
    "cli": (attempt_by_cli, Job.Source.CLI, 201),
}


@pytest.mark.django_db
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "attempt", ATTEMPTS, ids=[f"{a.role}-{a.agent}.{a.action}" for a in ATTEMPTS]
)
def test_a_refused_job_is_one_event_on_every_path(
    attempt: JobAttempt, path: str, fleet: None, queued_tasks
) -> None:
    how, source, permitted_status = PATHS[path]
    user = make_user(attempt.role)
    status = how(user, attempt)
    refused = events(Kind.JOB_REFUSED)
    if attempt.refusal is None:
        assert status == permitted_status
        assert refused == []
        return
    assert status == 403
    assert not Job.objects.exists()
    assert len(refused) == 1
    event = refused[0]
    assert (event.actor, event.actor_user, event.agent, event.action, event.outcome) == (
        user.username, user, attempt.agent, attempt.action, "refused",
    )  # fmt: skip
    assert event.roles == [g.name for g in user.groups.order_by("name")]
    assert event.data == {
        "source": source,
        "filter": attempt.filter,
        "filter_truncated": False,
        "reasons": {"action": attempt.refusal},
        "refused_by": "policy",
        "earlier_repeats": 0,
        "previous_event": None,
    }
    target = attempt.filter or "every node"
    assert event.summary == f"{attempt.agent} {attempt.action} on {target} refused: " + (
        attempt.refusal
    )
    # The form and the API pass their request: the address is known; the CLI has none.
    assert event.source_ip == ("" if path == "cli" else "127.0.0.1")
    # Already on the record with more detail: the 403 is not recorded a second time.
    assert events(Kind.ACCESS_DENIED) == []


@pytest.mark.django_db(transaction=True)
def test_the_refusal_is_committed_on_its_own_never_lost_with_a_callers_rollback() -> None:
    manager = make_user("manager")
    with pytest.raises(JobForbidden):
        plan_job(manager, "rpcutil", "ping", Filter(), source=Job.Source.API)
    assert len(events(Kind.JOB_REFUSED)) == 1  # committed: no test transaction around it
    # Inside a caller's transaction the refusal would roll back with it: refused loudly.
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        plan_job(manager, "rpcutil", "ping", Filter(), source=Job.Source.API)


@pytest.mark.django_db
def test_validation_errors_are_answered_not_recorded(queued_tasks) -> None:
    """A 400 (unknown action, bad filter) is the requester's typo, not a permission decision."""
    user = make_user("operator")
    client = Client(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    for payload in (
        {"agent": "service", "action": "explode"},
        {"agent": "rpcutil", "action": "ping", "filter": "customer=(("},
    ):
        response = client.post("/api/jobs/", payload, content_type="application/json")
        assert response.status_code == 400
    assert events(Kind.JOB_REFUSED) == [] and events(Kind.ACCESS_DENIED) == []


@pytest.mark.django_db
def test_the_requesters_text_is_bounded(queued_tasks) -> None:
    manager = make_user("manager")
    # The CLI joins its -F/-C/-I/-S words into the text it records: longer than a compound.
    long_filter = " ".join(f"identity:node-{n:05d}" for n in range(400))  # 7,999 chars
    with pytest.raises(JobForbidden):
        plan_job(manager, "rpcutil", "ping", Filter(), filter_text=long_filter)
    (event,) = events(Kind.JOB_REFUSED)
    assert len(event.data["filter"]) == 4096 and event.data["filter_truncated"] is True
    assert len(event.summary) <= 2000


# -- denied pages and API calls -------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    role: str  # "anonymous" for nobody logged in
    method: str
    path: str
    status: int
    view: str = ""
    reason: str = ""
    api: bool = False  # by API token instead of a session

    @property
    def recorded(self) -> bool:
        return self.status == 403 and self.role != "anonymous"


FOR_MANAGERS = "The audit history is for managers."
VISITS = [
    Visit("operator", "GET", "/audit/", 403, "audit:timeline", FOR_MANAGERS),
    Visit("operator", "GET", "/audit/events/1/", 403, "audit:event", FOR_MANAGERS),
    Visit("operator", "GET", "/access/", 403, "rbac:matrix"),
    Visit("manager", "GET", "/access/operators/", 403, "rbac:operators"),
    Visit("operator", "GET", "/enrolment/", 403, "enrolment"),
    Visit("manager", "GET", "/api/enrolment/", 403, "api:enrolment",
          "only admins decide which nodes are trusted", api=True),
    Visit("manager", "GET", "/audit/", 200),
    Visit("admin", "GET", "/access/", 200),
    # Another role's job is a 404 (its existence is not confirmed): not recorded.
    Visit("operator", "GET", "/jobs/999999/", 404),
    Visit("anonymous", "GET", "/audit/", 302),
    Visit("anonymous", "GET", "/api/enrolment/", 401, api=True),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("visit", VISITS, ids=[f"{v.role}-{v.path}" for v in VISITS])
def test_a_denied_page_or_api_call_is_an_event(visit: Visit) -> None:
    client = Client()
    user = None if visit.role == "anonymous" else make_user(visit.role)
    if user is not None and visit.api:
        client = Client(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    elif user is not None:
        client.force_login(user)
    response = client.generic(visit.method, visit.path, REMOTE_ADDR="192.0.2.7")
    assert response.status_code == visit.status
    denied = events(Kind.ACCESS_DENIED)
    if not visit.recorded:
        assert denied == []
        return
    assert len(denied) == 1
    event = denied[0]
    assert user is not None
    assert (event.actor, event.actor_user, event.outcome, event.source_ip) == (
        user.username, user, "denied", "192.0.2.7",
    )  # fmt: skip
    assert event.data == {
        "method": visit.method,
        "path": visit.path,
        "path_truncated": False,
        "status": 403,
        "view": visit.view,
        "reason": visit.reason,
        "earlier_repeats": 0,
        "previous_event": None,
    }


@pytest.mark.django_db
def test_a_logged_in_csrf_failure_is_recorded_an_anonymous_one_is_not() -> None:
    operator = make_user("operator")
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/login/", {"username": "x", "password": "y"}).status_code == 403
    assert events(Kind.ACCESS_DENIED) == []
    strict.force_login(operator)
    assert strict.post("/jobs/new/", {"agent_action": "rpcutil.ping"}).status_code == 403
    (event,) = events(Kind.ACCESS_DENIED)
    assert (event.actor, event.data["method"], event.data["path"]) == (
        "acmeop",
        "POST",
        "/jobs/new/",
    )


@pytest.mark.django_db
def test_the_body_and_query_string_are_never_recorded() -> None:
    operator = make_user("operator")
    client = Client()
    client.force_login(operator)
    long_path = "/audit/nodes/" + "n" * 400 + "/"
    client.post("/access/?token=secret-in-query", {"password": "secret-in-body"})
    client.get(long_path)
    first, second = events(Kind.ACCESS_DENIED)
    assert "secret" not in str(first.data) + first.summary
    assert first.data["path"] == "/access/"
    assert len(second.data["path"]) == 255 and second.data["path_truncated"] is True


# -- the flood guard ------------------------------------------------------------------------------


def expire_windows() -> None:
    """As if a minute had passed since each refusal key's last event."""
    RefusalWindow.objects.update(opened_at=F("opened_at") - timedelta(seconds=61))


@pytest.mark.django_db
def test_a_hammered_forbidden_url_is_one_event_a_minute_with_the_repeats_counted() -> None:
    operator, manager = make_user("operator"), make_user("manager")
    client = Client()
    client.force_login(operator)
    for _ in range(5):
        assert client.get("/audit/").status_code == 403
    first = events(Kind.ACCESS_DENIED)
    assert len(first) == 1
    # Another path, status or user is another key.
    client.get("/access/")
    other = Client()
    other.force_login(manager)
    other.get("/access/")
    assert len(events(Kind.ACCESS_DENIED)) == 3
    expire_windows()
    client.get("/audit/")
    latest = events(Kind.ACCESS_DENIED)[-1]
    assert latest.data["path"] == "/audit/"
    assert latest.data["earlier_repeats"] == 4 and latest.data["previous_event"] == first[0].pk
    # The repeats are counted from the new event on.
    client.get("/audit/")
    assert RefusalWindow.objects.get(event_id=latest.pk).repeats == 1


@pytest.mark.django_db
def test_repeated_identical_job_refusals_are_folded_different_ones_are_not(queued_tasks) -> None:
    manager = make_user("manager")
    client = Client(HTTP_AUTHORIZATION=f"Token {token_for(manager)}")

    def post(filter_text: str) -> None:
        payload = {"agent": "rpcutil", "action": "ping", "filter": filter_text}
        assert (
            client.post("/api/jobs/", payload, content_type="application/json").status_code == 403
        )

    for _ in range(3):
        post("customer=acme")
    post("customer=globex")  # a different attempt: its own event
    refused = events(Kind.JOB_REFUSED)
    assert [event.data["filter"] for event in refused] == ["customer=acme", "customer=globex"]
    expire_windows()
    post("customer=acme")
    assert events(Kind.JOB_REFUSED)[-1].data["earlier_repeats"] == 2
    assert events(Kind.ACCESS_DENIED) == []  # folded repeats are still job refusals


# -- cancel ---------------------------------------------------------------------------------------


def submitted_job(user: User, status: str) -> Job:
    job = submit_job(
        user=user, agent="rpcutil", action="ping", inputs={}, filter=Filter(), filter_text="",
        source=Job.Source.API,
    )  # fmt: skip
    Job.objects.filter(pk=job.pk).update(status=status)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Job.Status.QUEUED, Job.Status.RUNNING])
def test_a_cancel_records_who_asked(fleet: list[str], status: str, queued_tasks) -> None:
    job = submitted_job(make_user("admin"), status)
    canceller = User.objects.create_superuser("root2", password="pw-root2-123")
    cancel_job(job, canceller)
    (event,) = events(Kind.JOB_CANCEL_REQUESTED)
    assert (event.actor, event.job_id, event.agent, event.action) == (
        "root2", job.pk, "rpcutil", "ping",
    )  # fmt: skip
    assert event.outcome == ("cancelled" if status == Job.Status.QUEUED else "requested")
    assert event.data == {"status": status}
    if status == Job.Status.QUEUED:
        # Asked, then finished: in that order in the history.
        (finished,) = events(Kind.JOB_FINISHED)
        assert finished.pk > event.pk and finished.outcome == "cancelled"


@pytest.mark.django_db
def test_cancelling_a_finished_job_changes_nothing_and_records_nothing(
    fleet: list[str], queued_tasks
) -> None:
    job = submitted_job(make_user("admin"), Job.Status.COMPLETED)
    cancel_job(job, job.created_by)
    assert events(Kind.JOB_CANCEL_REQUESTED) == []


# -- the export by API token ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_manager_exports_with_a_token_and_it_is_recorded() -> None:
    make_user("operator")  # its grants are events to export
    manager = make_user("manager")
    client = Client(HTTP_AUTHORIZATION=f"Token {token_for(manager)}")
    response = client.get("/audit/export.jsonl")
    assert response.status_code == 200
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    (exported,) = events(Kind.AUDIT_EXPORTED)
    assert exported.actor == "mgr" and exported.data["format"] == "jsonl"
    # Every event up to the newest before the export, as with a session.
    assert len(lines) == AuditEvent.objects.filter(id__lt=exported.pk).count() > 0
    assert json.loads(lines[-1])["id"] == exported.data["through_id"]
    csv = client.get("/audit/export.csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "header", "status"),
    [
        ("operator", "valid", 403),
        ("manager", "Token not-a-real-token", 401),
        ("manager", "Token", 401),
        ("manager", "Token two words", 401),
        ("inactive manager", "valid", 401),
        ("manager", "", 302),  # no header: the session decides, as before (to the login page)
    ],
)
def test_the_export_refuses_bad_tokens_and_non_managers(who: str, header: str, status: int) -> None:
    user = make_user(who.removeprefix("inactive "))
    if who.startswith("inactive"):
        User.objects.filter(pk=user.pk).update(is_active=False)
    if header == "valid":
        header = f"Token {token_for(user)}"
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/audit/export.csv")
    assert response.status_code == status
    assert events(Kind.AUDIT_EXPORTED) == []
    if status == 401:
        assert response["WWW-Authenticate"] == "Token"
    denied = events(Kind.ACCESS_DENIED)
    if status == 403:
        (event,) = denied
        assert (event.actor, event.data["path"], event.data["view"]) == (
            user.username, "/audit/export.csv", "audit:export",
        )  # fmt: skip
    else:
        assert denied == []


@pytest.mark.integration
def test_the_export_by_token_over_http_on_the_embedded_portal(tmp_path: Path) -> None:
    """The same, with a real HTTP client against the ASGI server (streamed under ASGI)."""
    from harness.stacks import embedded_portal
    from portal.core.supervisor import Supervisor

    with Supervisor(tmp_path / "logs") as sup:
        portal = embedded_portal(sup, tmp_path, users=("manager", "noc"))
        noc_token = portal.manage("issue_token", "noc").strip()
        url = f"{portal.base_url}/audit/export.jsonl"

        exported = requests.get(url, headers={"Authorization": f"Token {portal.token}"}, timeout=30)
        assert exported.status_code == 200
        lines = exported.text.splitlines()
        assert lines and all(json.loads(line)["kind"] != "audit.exported" for line in lines)
        assert (
            requests.get(url, headers={"Authorization": "Token nope"}, timeout=30).status_code
            == 401
        )
        refused = requests.get(url, headers={"Authorization": f"Token {noc_token}"}, timeout=30)
        assert refused.status_code == 403
        kinds_recorded = [row[0] for row in portal.query(
            "SELECT kind || ' ' || actor FROM audit_auditevent WHERE kind IN "
            "('audit.exported', 'access.denied') ORDER BY id"
        )]  # fmt: skip
        assert kinds_recorded == ["audit.exported manager", "access.denied noc"]
