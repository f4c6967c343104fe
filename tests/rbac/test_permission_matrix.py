"""Who may do what, on every path, generated from one table (issue 14).

``TABLE`` has a row for each kind of person and each thing they might do. Its columns say what
must happen on each path that thing has: the web form, the JSON API, the ``manage.py``
commands, the Celery task's re-check just before anything is sent, and the job WebSocket. A
blank cell (``_``) is a path the action does not have. Each filled cell becomes one test, with
an id such as ``manager-cancel-api``. It asserts the answer and, for a refusal, that nothing
changed. A cell where the code is known to be wrong keeps the right answer and an entry in
``wrong``, which makes it a strict xfail.

The jobs belong to ``requester``, of role ``night-shift``. The unscoped operator and the
canceller share that role, so they see its jobs (docs/access.md, "The policy module"). The
scoped operator and the operator without a grant do not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from agents.filters import Filter
from portal.accounts.services import issue_token
from portal.asgi import application
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent
from portal.jobs import lifecycle, runner
from portal.jobs.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from portal.jobs.models import Approval, Job
from portal.jobs.services import submit_job
from portal.jobs.validation import parse_filter_text
from portal.rbac.models import ADMIN_ROLE, MANAGER_ROLE, OPERATOR_ROLE, Grant
from portal.rbac.services import (
    GrantSpec,
    revoke_grant,
    set_grant,
    sync_catalog,
    update_role_settings,
)

pytestmark = pytest.mark.django_db

ACME = "customer=acme"  # 4 of the 8 nodes of the ``fleet`` fixture (tests/rbac/conftest.py)
GLOBEX = "customer=globex"  # the other 4
SHARED_ROLE = "night-shift"  # the requester's role
APPROVAL_ABOVE = 5  # night-shift's grant asks for a second person above this many nodes
TIMEOUT = 5


class Who(StrEnum):
    ADMIN = "admin"  # role admin
    MANAGER = "manager"  # role manager
    OPERATOR = "operator"  # night-shift: rpcutil, unscoped; the requester's colleague
    SCOPED = "scoped"  # acme-noc: rpcutil on customer=acme only
    NO_GRANT = "nogrant"  # role operator, which is granted nothing
    APPROVER = "approver"  # approvers: may approve, granted nothing
    CANCELLER = "canceller"  # night-shift and shift-leads (may cancel any job it sees)
    INACTIVE = "inactive"  # an admin whose account was deactivated


class Do(StrEnum):
    RUN = "run"  # rpcutil ping on the acme nodes
    RUN_GLOBEX = "run_globex"  # rpcutil ping on the globex nodes
    RUN_REVOKED = "run_revoked"  # submitted, then the right is taken away before the worker runs it
    READ = "read"  # another person's running job
    WATCH = "watch"  # the same job, live
    CANCEL = "cancel"  # the same job
    WITHDRAW = "withdraw"  # another person's job waiting for approval
    APPROVE = "approve"  # the same job
    AUDIT = "audit"  # the audit history page
    EXPORT = "export"  # the audit history as CSV
    ROLES = "roles"  # the roles admin page (Access)


class Path(StrEnum):
    FORM = "form"  # pages, logged in with the Django test client
    API = "api"  # JSON API, token auth
    CLI = "cli"  # manage.py rpc / cancel_job
    TASK = "task"  # the worker's re-check in runner.run_job
    WS = "ws"  # /ws/jobs/<id>/ through portal.asgi


class Expect(Enum):
    """What a path answers, in its own terms."""

    OK = "ok"  # done: 2xx or a redirect to the job; the command runs; the socket streams; sent
    DENIED = "denied"  # 403; CommandError; the task fails the job before sending anything
    HIDDEN = "hidden"  # the job is not shown to them: 404; CommandError "no job"; socket 4403
    ANON = "anon"  # not authenticated: redirect to the login; 401; socket 4401


ADMIN, MANAGER, OPERATOR, SCOPED, NO_GRANT, APPROVER, CANCELLER, INACTIVE = Who
OK, DENIED, HIDDEN, ANON = Expect
_ = None  # the action has no such path

# The paths each action has. Approving, the audit page and the roles page are web pages
# only, and the worker's re-check concerns running.
PATHS_OF: dict[Do, tuple[Path, ...]] = {
    Do.RUN: (Path.FORM, Path.API, Path.CLI, Path.TASK),
    Do.RUN_GLOBEX: (Path.FORM, Path.API, Path.CLI),
    Do.RUN_REVOKED: (Path.TASK,),
    Do.READ: (Path.FORM, Path.API),
    Do.WATCH: (Path.WS,),
    Do.CANCEL: (Path.FORM, Path.API, Path.CLI),
    Do.WITHDRAW: (Path.FORM, Path.API, Path.CLI),
    Do.APPROVE: (Path.FORM,),
    Do.AUDIT: (Path.FORM,),
    Do.EXPORT: (Path.FORM, Path.API),
    Do.ROLES: (Path.FORM,),
}


@dataclass(frozen=True)
class Row:
    """What must happen when ``who`` tries ``does``, on each path (``None``: no such path)."""

    who: Who
    does: Do
    form: Expect | None
    api: Expect | None
    cli: Expect | None
    task: Expect | None
    ws: Expect | None
    wrong: dict[Path, str] = field(default_factory=dict)  # the code disagrees: why it is wrong


# fmt: off
TABLE = [
    #   who        does            form    api     cli     task    ws
    Row(ADMIN,     Do.RUN,         OK,     OK,     OK,     OK,     _),
    Row(ADMIN,     Do.RUN_GLOBEX,  OK,     OK,     OK,     _,      _),
    Row(ADMIN,     Do.RUN_REVOKED, _,      _,      _,      DENIED, _),
    Row(ADMIN,     Do.READ,        OK,     OK,     _,      _,      _),
    Row(ADMIN,     Do.WATCH,       _,      _,      _,      _,      OK),
    Row(ADMIN,     Do.CANCEL,      OK,     OK,     OK,     _,      _),
    Row(ADMIN,     Do.WITHDRAW,    OK,     OK,     OK,     _,      _),
    Row(ADMIN,     Do.APPROVE,     OK,     _,      _,      _,      _),
    Row(ADMIN,     Do.AUDIT,       OK,     _,      _,      _,      _),
    Row(ADMIN,     Do.EXPORT,      OK,     OK,     _,      _,      _),
    Row(ADMIN,     Do.ROLES,       OK,     _,      _,      _,      _),

    Row(MANAGER,   Do.RUN,         DENIED, DENIED, DENIED, DENIED, _),
    Row(MANAGER,   Do.RUN_GLOBEX,  DENIED, DENIED, DENIED, _,      _),
    Row(MANAGER,   Do.READ,        OK,     OK,     _,      _,      _),
    Row(MANAGER,   Do.WATCH,       _,      _,      _,      _,      OK),
    Row(MANAGER,   Do.CANCEL,      DENIED, DENIED, DENIED, _,      _),
    Row(MANAGER,   Do.WITHDRAW,    DENIED, DENIED, DENIED, _,      _),
    Row(MANAGER,   Do.APPROVE,     DENIED, _,      _,      _,      _),
    Row(MANAGER,   Do.AUDIT,       OK,     _,      _,      _,      _),
    Row(MANAGER,   Do.EXPORT,      OK,     OK,     _,      _,      _),
    Row(MANAGER,   Do.ROLES,       DENIED, _,      _,      _,      _),

    Row(OPERATOR,  Do.RUN,         OK,     OK,     OK,     OK,     _),
    Row(OPERATOR,  Do.RUN_GLOBEX,  OK,     OK,     OK,     _,      _),
    Row(OPERATOR,  Do.RUN_REVOKED, _,      _,      _,      DENIED, _),
    Row(OPERATOR,  Do.READ,        OK,     OK,     _,      _,      _),
    Row(OPERATOR,  Do.WATCH,       _,      _,      _,      _,      OK),
    Row(OPERATOR,  Do.CANCEL,      DENIED, DENIED, DENIED, _,      _),
    Row(OPERATOR,  Do.WITHDRAW,    DENIED, DENIED, DENIED, _,      _),
    Row(OPERATOR,  Do.APPROVE,     DENIED, _,      _,      _,      _),
    Row(OPERATOR,  Do.AUDIT,       DENIED, _,      _,      _,      _),
    Row(OPERATOR,  Do.EXPORT,      DENIED, DENIED, _,      _,      _),
    Row(OPERATOR,  Do.ROLES,       DENIED, _,      _,      _,      _),

    Row(SCOPED,    Do.RUN,         OK,     OK,     OK,     OK,     _),
    Row(SCOPED,    Do.RUN_GLOBEX,  DENIED, DENIED, DENIED, _,      _),
    Row(SCOPED,    Do.RUN_REVOKED, _,      _,      _,      DENIED, _),
    Row(SCOPED,    Do.READ,        HIDDEN, HIDDEN, _,      _,      _),
    Row(SCOPED,    Do.WATCH,       _,      _,      _,      _,      HIDDEN),
    Row(SCOPED,    Do.CANCEL,      HIDDEN, HIDDEN, HIDDEN, _,      _),
    Row(SCOPED,    Do.WITHDRAW,    HIDDEN, HIDDEN, HIDDEN, _,      _),
    Row(SCOPED,    Do.APPROVE,     HIDDEN, _,      _,      _,      _),
    Row(SCOPED,    Do.AUDIT,       DENIED, _,      _,      _,      _),
    Row(SCOPED,    Do.EXPORT,      DENIED, DENIED, _,      _,      _),
    Row(SCOPED,    Do.ROLES,       DENIED, _,      _,      _,      _),

    Row(NO_GRANT,  Do.RUN,         DENIED, DENIED, DENIED, DENIED, _),
    Row(NO_GRANT,  Do.RUN_GLOBEX,  DENIED, DENIED, DENIED, _,      _),
    Row(NO_GRANT,  Do.READ,        HIDDEN, HIDDEN, _,      _,      _),
    Row(NO_GRANT,  Do.WATCH,       _,      _,      _,      _,      HIDDEN),
    Row(NO_GRANT,  Do.CANCEL,      HIDDEN, HIDDEN, HIDDEN, _,      _),
    Row(NO_GRANT,  Do.WITHDRAW,    HIDDEN, HIDDEN, HIDDEN, _,      _),
    Row(NO_GRANT,  Do.APPROVE,     HIDDEN, _,      _,      _,      _),
    Row(NO_GRANT,  Do.AUDIT,       DENIED, _,      _,      _,      _),
    Row(NO_GRANT,  Do.EXPORT,      DENIED, DENIED, _,      _,      _),
    Row(NO_GRANT,  Do.ROLES,       DENIED, _,      _,      _,      _),

    # Approvers see the jobs sent for approval, not the others.
    Row(APPROVER,  Do.RUN,         DENIED, DENIED, DENIED, DENIED, _),
    Row(APPROVER,  Do.RUN_GLOBEX,  DENIED, DENIED, DENIED, _,      _),
    Row(APPROVER,  Do.READ,        HIDDEN, HIDDEN, _,      _,      _),
    Row(APPROVER,  Do.WATCH,       _,      _,      _,      _,      HIDDEN),
    Row(APPROVER,  Do.CANCEL,      HIDDEN, HIDDEN, HIDDEN, _,      _),
    Row(APPROVER,  Do.WITHDRAW,    DENIED, DENIED, DENIED, _,      _),
    Row(APPROVER,  Do.APPROVE,     OK,     _,      _,      _,      _),
    Row(APPROVER,  Do.AUDIT,       DENIED, _,      _,      _,      _),
    Row(APPROVER,  Do.EXPORT,      DENIED, DENIED, _,      _,      _),
    Row(APPROVER,  Do.ROLES,       DENIED, _,      _,      _,      _),

    Row(CANCELLER, Do.RUN,         OK,     OK,     OK,     OK,     _),
    Row(CANCELLER, Do.RUN_GLOBEX,  OK,     OK,     OK,     _,      _),
    Row(CANCELLER, Do.RUN_REVOKED, _,      _,      _,      DENIED, _),
    Row(CANCELLER, Do.READ,        OK,     OK,     _,      _,      _),
    Row(CANCELLER, Do.WATCH,       _,      _,      _,      _,      OK),
    Row(CANCELLER, Do.CANCEL,      OK,     OK,     OK,     _,      _),
    Row(CANCELLER, Do.WITHDRAW,    OK,     OK,     OK,     _,      _),
    Row(CANCELLER, Do.APPROVE,     DENIED, _,      _,      _,      _),
    Row(CANCELLER, Do.AUDIT,       DENIED, _,      _,      _,      _),
    Row(CANCELLER, Do.EXPORT,      DENIED, DENIED, _,      _,      _),
    Row(CANCELLER, Do.ROLES,       DENIED, _,      _,      _,      _),

    # The commands have no login: they refuse the account's requests instead. The task is
    # that of a job queued while the account was still active.
    Row(INACTIVE,  Do.RUN,         ANON,   ANON,   DENIED, DENIED, _),
    Row(INACTIVE,  Do.RUN_GLOBEX,  ANON,   ANON,   DENIED, _,      _),
    Row(INACTIVE,  Do.READ,        ANON,   ANON,   _,      _,      _),
    Row(INACTIVE,  Do.WATCH,       _,      _,      _,      _,      ANON),
    Row(INACTIVE,  Do.CANCEL,      ANON,   ANON,   DENIED, _,      _),
    Row(INACTIVE,  Do.WITHDRAW,    ANON,   ANON,   DENIED, _,      _),
    Row(INACTIVE,  Do.APPROVE,     ANON,   _,      _,      _,      _),
    Row(INACTIVE,  Do.AUDIT,       ANON,   _,      _,      _,      _),
    Row(INACTIVE,  Do.EXPORT,      ANON,   ANON,   _,      _,      _),
    Row(INACTIVE,  Do.ROLES,       ANON,   _,      _,      _,      _),
]
# fmt: on


@dataclass(frozen=True)
class Cell:
    who: Who
    does: Do
    path: Path
    expect: Expect

    @property
    def id(self) -> str:
        return f"{self.who}-{self.does}-{self.path}"


def _params() -> list[Any]:
    params = []
    for row in TABLE:
        for path in Path:
            expect = getattr(row, path.value)
            if expect is None:
                continue
            marks = []
            if path is Path.WS:
                # The consumer reads the database from another thread: committed rows only.
                marks.append(pytest.mark.django_db(transaction=True))
            if path in row.wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=row.wrong[path]))
            cell = Cell(row.who, row.does, path, expect)
            params.append(pytest.param(cell, id=cell.id, marks=marks))
    return params


# -- the people and their jobs ---------------------------------------------------------------


class Scene:
    """The fleet, the roles, the requester and whichever person and job a cell needs, made
    when first asked for."""

    def __init__(self, sent: list[int]) -> None:
        self.sent = sent  # the jobs the worker got as far as sending
        sync_catalog()
        for role in (ADMIN_ROLE, MANAGER_ROLE, OPERATOR_ROLE):
            Group.objects.get_or_create(name=role)
        grant(SHARED_ROLE, approval=Grant.Approval.ABOVE, approval_above=APPROVAL_ABOVE)
        self.requester = member("requester", SHARED_ROLE)
        self._jobs: dict[str, Job] = {}

    def person(self, who: Who) -> User:
        if who is Who.ADMIN:
            return member("admin", ADMIN_ROLE)
        if who is Who.MANAGER:
            return member("manager", MANAGER_ROLE)
        if who is Who.OPERATOR:
            return member("operator", SHARED_ROLE)
        if who is Who.SCOPED:
            grant("acme-noc", scope=ACME)
            return member("scoped", "acme-noc")
        if who is Who.NO_GRANT:
            return member("nogrant", OPERATOR_ROLE)
        if who is Who.APPROVER:
            user = member("approver", "approvers")
            settings_of("approvers", may_approve=True)
            return user
        if who is Who.CANCELLER:
            user = member("canceller", SHARED_ROLE, "shift-leads")
            settings_of("shift-leads", may_cancel_any=True)
            return user
        user = member("inactive", ADMIN_ROLE)
        user.is_active = False
        user.save()
        return user

    @property
    def running_job(self) -> Job:
        """The requester's ping of the acme nodes, started by a worker."""
        if "running" not in self._jobs:
            job = submit(self.requester, ACME)
            assert job.status == Job.Status.QUEUED
            started = lifecycle.start(job.pk)
            assert started is not None
            self._jobs["running"] = started
        return self._jobs["running"]

    @property
    def pending_job(self) -> Job:
        """The requester's ping of every node: above the grant's count, so it waits."""
        if "pending" not in self._jobs:
            job = submit(self.requester, "")
            assert job.status == Job.Status.PENDING_APPROVAL
            self._jobs["pending"] = job
        return self._jobs["pending"]


def member(username: str, *roles: str) -> User:
    user = User.objects.create_user(username)  # no password: the tests log in without one
    user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in roles))
    return user


def grant(role: str, scope: str = "", **approval: Any) -> None:
    Group.objects.get_or_create(name=role)
    set_grant(GrantSpec(role, "rpcutil", None, scope, **approval), actor=None)


def settings_of(role: str, **rights: bool) -> None:
    update_role_settings(role, confirm_above=None, reason_required=False, actor=None, **{
        "may_approve": False, **rights,
    })  # fmt: skip


def submit(user: User, text: str) -> Job:
    return submit_job(
        user=user, agent="rpcutil", action="ping", inputs={}, filter=parse_filter_text(text),
        filter_text=text, source=Job.Source.API,
    )  # fmt: skip


def queued_in_the_name_of(user: User, text: str) -> Job:
    """A queued job of ``user``, stored as ``submit_job`` stores one, as if it was submitted
    while they still had the right: only the worker's re-check stands in its way now."""
    typed = parse_filter_text(text).to_dict()
    job = Job.objects.create(
        created_by=user, source=Job.Source.API, agent="rpcutil", action="ping",
        filter_text=text, typed_filter=typed, filter=typed, collective="mcollective",
        timeout=10, status=Job.Status.QUEUED,
    )  # fmt: skip
    job.roles.set(user.groups.all())
    return job


def take_the_right_away(user: User) -> None:
    """Revoke the rpcutil grants of the user's roles, and take the admin role away."""
    for role in list(user.groups.all()):
        if role.name == ADMIN_ROLE:
            user.groups.remove(role)
        else:
            revoke_grant(role.name, "rpcutil", actor=None)


@pytest.fixture
def scene(fleet: list[str], queued_tasks: mock.MagicMock) -> Iterator[Scene]:
    """Everything a cell needs, with the broker replaced: a job that gets past the worker's
    re-check is recorded in ``scene.sent`` and completed, and nothing is sent."""

    def stand_in(job: Job, gateway: object, progress: object) -> None:
        sent.append(job.pk)
        lifecycle.finish(job, Job.Status.COMPLETED)

    sent: list[int] = []
    with (
        mock.patch.object(runner, "BrokerGateway"),
        mock.patch.object(runner, "_discover_and_collect", side_effect=stand_in),
    ):
        yield Scene(sent)


# -- how each path is asked, and what its answer means -----------------------------------------

Seen = Expect | str  # a str: an answer that is none of the four


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {issue_token(user.username)}")


def on_page(response: HttpResponse, done: int) -> Seen:
    if response.status_code == 302 and response.url.startswith(reverse(settings.LOGIN_URL)):
        return ANON
    answers = {done: OK, 403: DENIED, 404: HIDDEN}
    return answers.get(response.status_code, f"HTTP {response.status_code}")


def on_api(response: HttpResponse, done: int) -> Seen:
    answers = {done: OK, 401: ANON, 403: DENIED, 404: HIDDEN}
    return answers.get(response.status_code, f"HTTP {response.status_code}")


def by_command(*args: str) -> Seen:
    try:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    except CommandError as exc:
        return HIDDEN if str(exc).startswith("no job ") else DENIED
    return OK


def by_worker(scene: Scene, job: Job) -> Seen:
    runner.run_job(job.pk)
    job.refresh_from_db()
    if job.pk in scene.sent:
        return OK
    if job.status == Job.Status.FAILED and job.error.startswith("refused when it was about"):
        assert job.requestid == "" and job.targeted == []  # nothing was sent
        return DENIED
    return f"{job.status}: {job.error}"


def by_socket(user: User, job: Job) -> Seen:
    """Watch the job through the ASGI application, with the session cookie a browser sends."""
    client = logged_in(user)
    name = settings.SESSION_COOKIE_NAME
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"{name}={client.cookies[name].value}".encode()),
    ]

    async def watch() -> tuple[bool, int | None, dict[str, Any]]:
        socket = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, code = await socket.connect(timeout=TIMEOUT)
        first = await socket.receive_json_from(TIMEOUT) if connected else {}
        await socket.disconnect()
        return connected, code, first

    connected, code, first = async_to_sync(watch)()
    if connected:
        assert first["type"] == "job.snapshot" and first["job"]["id"] == job.pk
        return OK
    return {CLOSE_FORBIDDEN: HIDDEN, CLOSE_UNAUTHENTICATED: ANON}.get(code, f"closed {code}")


def run_on_form(user: User, text: str) -> Seen:
    """Post the form, then confirm the count its confirmation page shows."""
    client = logged_in(user)
    form = {"agent_action": "rpcutil.ping", "filter": text}
    shown = client.post("/jobs/new/", form)
    if shown.status_code != 200:
        # Refused: a confirmation forged without the page is refused the same way.
        forged = client.post("/jobs/new/", {**form, "confirmed": "1", "planned_count": "4"})
        assert forged.status_code == shown.status_code
        return on_page(shown, done=200)
    count = re.search(r'name="planned_count" value="(\d+)"', shown.content.decode())
    assert count is not None, "no confirmation page"
    response = client.post("/jobs/new/", {**form, "confirmed": "1", "planned_count": count[1]})
    seen = on_page(response, done=302)
    if seen is OK:
        assert response.url == f"/jobs/{Job.objects.get(created_by=user).pk}/"
    return seen


def run_on_api(user: User, text: str) -> Seen:
    body = {"agent": "rpcutil", "action": "ping", "filter": text}
    return on_api(api(user).post("/api/jobs/", body, content_type="application/json"), 201)


def run_on_cli(user: User, text: str) -> Seen:
    return by_command("rpc", "rpcutil", "ping", "-S", text, "--user", user.username)


def cancel_on_form(user: User, job: Job) -> Seen:
    return on_page(logged_in(user).post(f"/jobs/{job.pk}/cancel/", {"confirmed": "1"}), 302)


def cancel_on_api(user: User, job: Job, done: int) -> Seen:
    return on_api(api(user).post(f"/api/jobs/{job.pk}/cancel/"), done)


def cancel_on_cli(user: User, job: Job) -> Seen:
    return by_command("cancel_job", str(job.pk), "--user", user.username)


Driver = Callable[[Scene, User], Seen]
DRIVERS: dict[tuple[Do, Path], Driver] = {
    (Do.RUN, Path.FORM): lambda s, u: run_on_form(u, ACME),
    (Do.RUN, Path.API): lambda s, u: run_on_api(u, ACME),
    (Do.RUN, Path.CLI): lambda s, u: run_on_cli(u, ACME),
    (Do.RUN, Path.TASK): lambda s, u: by_worker(s, queued_in_the_name_of(u, ACME)),
    (Do.RUN_GLOBEX, Path.FORM): lambda s, u: run_on_form(u, GLOBEX),
    (Do.RUN_GLOBEX, Path.API): lambda s, u: run_on_api(u, GLOBEX),
    (Do.RUN_GLOBEX, Path.CLI): lambda s, u: run_on_cli(u, GLOBEX),
    (Do.RUN_REVOKED, Path.TASK): lambda s, u: run_revoked(s, u),
    (Do.READ, Path.FORM): lambda s, u: on_page(logged_in(u).get(f"/jobs/{s.running_job.pk}/"), 200),
    (Do.READ, Path.API): lambda s, u: read_on_api(u, s.running_job),
    (Do.WATCH, Path.WS): lambda s, u: by_socket(u, s.running_job),
    (Do.CANCEL, Path.FORM): lambda s, u: cancel_on_form(u, s.running_job),
    (Do.CANCEL, Path.API): lambda s, u: cancel_on_api(u, s.running_job, 202),
    (Do.CANCEL, Path.CLI): lambda s, u: cancel_on_cli(u, s.running_job),
    (Do.WITHDRAW, Path.FORM): lambda s, u: cancel_on_form(u, s.pending_job),
    (Do.WITHDRAW, Path.API): lambda s, u: cancel_on_api(u, s.pending_job, 200),
    (Do.WITHDRAW, Path.CLI): lambda s, u: cancel_on_cli(u, s.pending_job),
    (Do.APPROVE, Path.FORM): lambda s, u: on_page(
        logged_in(u).post(
            f"/jobs/{s.pending_job.pk}/decide/", {"decision": "approve", "comment": "checked"}
        ),
        302,
    ),
    (Do.AUDIT, Path.FORM): lambda s, u: on_page(logged_in(u).get("/audit/"), 200),
    (Do.EXPORT, Path.FORM): lambda s, u: on_page(logged_in(u).get("/audit/export.csv"), 200),
    (Do.EXPORT, Path.API): lambda s, u: on_api(api(u).get("/audit/export.csv"), 200),
    (Do.ROLES, Path.FORM): lambda s, u: on_page(logged_in(u).get("/access/"), 200),
}


def read_on_api(user: User, job: Job) -> Seen:
    response = api(user).get(f"/api/jobs/{job.pk}/")
    seen = on_api(response, 200)
    if seen is OK:
        assert response.json()["id"] == job.pk
    return seen


def run_revoked(scene: Scene, user: User) -> Seen:
    job = submit(user, ACME)
    assert job.status == Job.Status.QUEUED
    take_the_right_away(user)
    return by_worker(scene, job)


# -- what must have changed, or not ----------------------------------------------------------


def reached(job: Job) -> list[str]:
    return runner.discover_from_inventory(Filter.from_dict(job.filter))


def after_run(scene: Scene, user: User, cell: Cell) -> None:
    if cell.path is Path.TASK:
        after_task(scene, user, cell)
        return
    jobs = Job.objects.filter(created_by=user)
    if cell.expect is not OK:
        assert not jobs.exists() and scene.sent == []
        return
    job = jobs.get()
    customer = "globex" if cell.does is Do.RUN_GLOBEX else "acme"
    assert reached(job) == [f"{customer}-{dc}-{role}" for dc in "ab" for role in ("db", "web")]
    assert scene.sent == ([job.pk] if cell.path in (Path.CLI, Path.TASK) else [])


def after_task(scene: Scene, user: User, cell: Cell) -> None:
    job = Job.objects.get(created_by=user)
    if cell.expect is OK:
        assert scene.sent == [job.pk] and job.status == Job.Status.COMPLETED
    else:
        assert scene.sent == [] and job.status == Job.Status.FAILED


def after_cancel(scene: Scene, user: User, cell: Cell) -> None:
    job = Job.objects.get(pk=scene.running_job.pk)
    assert job.status == Job.Status.RUNNING  # its runner ends it at its next check
    if cell.expect is OK:
        assert job.cancel_requested and job.cancelled_by == user
    else:
        assert not job.cancel_requested and job.cancelled_by is None
        assert not AuditEvent.objects.filter(kind=Kind.JOB_CANCEL_REQUESTED).exists()


def after_withdraw(scene: Scene, user: User, cell: Cell) -> None:
    job = Job.objects.get(pk=scene.pending_job.pk)
    approval = Approval.objects.get(job=job)
    if cell.expect is OK:
        assert job.status == Job.Status.WITHDRAWN and approval.decided_by == user
    else:
        assert job.status == Job.Status.PENDING_APPROVAL
        assert approval.state == Approval.State.PENDING


def after_approve(scene: Scene, user: User, cell: Cell) -> None:
    job = Job.objects.get(pk=scene.pending_job.pk)
    approval = Approval.objects.get(job=job)
    if cell.expect is OK:
        assert job.status == Job.Status.QUEUED and approval.state == Approval.State.APPROVED
        assert approval.decided_by == user
    else:
        assert job.status == Job.Status.PENDING_APPROVAL
        assert approval.state == Approval.State.PENDING


def after_export(scene: Scene, user: User, cell: Cell) -> None:
    exported = AuditEvent.objects.filter(kind=Kind.AUDIT_EXPORTED, actor=user.username)
    assert exported.exists() is (cell.expect is OK)


def nothing_to_check(scene: Scene, user: User, cell: Cell) -> None:
    """Reading changes nothing; what was read is checked by the driver."""


AFTER: dict[Do, Callable[[Scene, User, Cell], None]] = {
    Do.RUN: after_run,
    Do.RUN_GLOBEX: after_run,
    Do.RUN_REVOKED: after_task,
    Do.CANCEL: after_cancel,
    Do.WITHDRAW: after_withdraw,
    Do.APPROVE: after_approve,
    Do.EXPORT: after_export,
}


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", _params())
def test_permission(scene: Scene, cell: Cell) -> None:
    user = scene.person(cell.who)
    seen = DRIVERS[cell.does, cell.path](scene, user)
    assert seen == cell.expect, f"{cell.id}: expected {cell.expect.value}, got {seen}"
    AFTER.get(cell.does, nothing_to_check)(scene, user, cell)


def test_the_table_has_every_person_and_action_once_on_its_paths() -> None:
    """A row for each person and action (running after the right is taken away only for
    those who had one), each filling exactly its action's paths; every path has a driver."""
    pairs = [(row.who, row.does) for row in TABLE]
    assert len(pairs) == len(set(pairs))
    may_run = {Who.ADMIN, Who.OPERATOR, Who.SCOPED, Who.CANCELLER}
    expected = {
        (who, does) for who in Who for does in Do if does is not Do.RUN_REVOKED or who in may_run
    }
    assert set(pairs) == expected
    for row in TABLE:
        filled = tuple(path for path in Path if getattr(row, path.value) is not None)
        assert filled == PATHS_OF[row.does], (row.who, row.does)
        assert set(row.wrong) <= set(filled)
    assert set(DRIVERS) == {(does, path) for does, paths in PATHS_OF.items() for path in paths}
