"""One plan for the live count, the confirmation page and the job (issue 14, item 2).

Measured before: 7 on the form, 1 on the confirmation page (the scope); 30 with collective
dc_a on the form, 0 on confirmation; a job reaching only nodes outside the scope accepted as a
0-node job. Now the form's count comes from the same plan as the confirmation and the job.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from portal.accounts.services import issue_token
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent
from portal.inventory.models import Node
from portal.jobs.models import Job
from tests.conftest import grant_every_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_fleet(db: None) -> None:
    """7 web nodes: 1 of customer acme in dc_a, 6 of globex (3 in dc_a, 3 in dc_b)."""
    now = timezone.now()
    rows = [("acme-web", "acme", "a")] + [
        (f"globex-web{n}", "globex", "ab"[n // 3]) for n in range(6)
    ]
    Node.objects.bulk_create(
        Node(
            identity=identity,
            facts={"customer": customer, "role": "web", "datacenter": dc},
            collectives=["mcollective", f"dc_{dc}"],
            first_seen=now,
            last_seen=now,
            registered_at=now,
        )
        for identity, customer, dc in rows
    )


@pytest.fixture
def acme_operator(db: None) -> User:
    user = User.objects.create_user("acme-op", password="pw-acme-op-1")
    user.groups.add(grant_every_agent("acme-noc", scope="customer=acme"))
    return user


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _plan(client: Client, **params: str) -> dict:
    response = client.get("/api/jobs/plan/", {"agent_action": "rpcutil.ping", **params})
    return {"status": response.status_code, **response.json()}


def test_the_live_count_applies_the_scope_and_matches_confirmation_and_job(
    web_fleet: None, acme_operator: User, queued_tasks
) -> None:
    client = _client(acme_operator)
    plan = _plan(client, filter="role=web")
    assert (plan["status"], plan["count"], plan["typed"]) == (200, 1, 7)
    assert plan["scope"] == "customer==acme"
    assert [node["identity"] for node in plan["nodes"]] == ["acme-web"]  # no globex node shown

    page = client.post("/jobs/new/", {"agent_action": "rpcutil.ping", "filter": "role=web"})
    assert "on 1 node?" in page.content.decode()
    assert "your filter matches 7; 1 of them is inside your scope" in page.content.decode()
    done = client.post(
        "/jobs/new/",
        {"agent_action": "rpcutil.ping", "filter": "role=web", "confirmed": "1",
         "planned_count": "1"},
    )  # fmt: skip
    assert done.status_code == 302
    job = Job.objects.get()
    assert AuditEvent.objects.get(kind=Kind.JOB_SUBMITTED).data["planned_nodes"] == 1
    assert "customer" in str(job.filter) and job.typed_filter != job.filter


def test_the_live_count_applies_the_collective_and_the_limit(
    web_fleet: None, operator: User
) -> None:
    client = _client(operator)
    everything = _plan(client, filter="role=web")
    assert (everything["count"], everything["typed"]) == (7, None)  # unscoped: no typed count
    in_dc_a = _plan(client, filter="role=web", **{"option:collective": "dc_a"})
    assert (in_dc_a["count"], in_dc_a["collective"]) == (4, "dc_a")
    limited = _plan(client, filter="role=web", **{"option:limit": "2"})
    assert (limited["count"], limited["matched"], limited["limit"]) == (2, 7, "2")
    page = client.post(
        "/jobs/new/", {"agent_action": "rpcutil.ping", "filter": "role=web", "option:limit": "2"}
    )
    assert "on 2 nodes?" in page.content.decode() and "limit 2: 2 of 7 chosen" in (
        page.content.decode()
    )


def test_a_job_reaching_only_nodes_outside_the_scope_is_refused_on_every_path(
    web_fleet: None, acme_operator: User, queued_tasks
) -> None:
    outside = "customer=globex"
    plan = _plan(_client(acme_operator), filter=outside)
    assert plan["count"] == 0 and "none inside your scope" in plan["problem"]
    assert not AuditEvent.objects.filter(kind=Kind.JOB_REFUSED).exists()  # a count, not a try

    form = _client(acme_operator).post("/jobs/new/", {"agent_action": "rpcutil.ping",
                                                      "filter": outside})  # fmt: skip
    assert form.status_code == 403
    assert "your filter matches 6 nodes, none inside your scope" in form.content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Token {issue_token(acme_operator.username)}")
    response = api.post("/api/jobs/", {"agent": "rpcutil", "action": "ping", "filter": outside},
                        content_type="application/json")  # fmt: skip
    assert response.status_code == 403
    assert "none inside your scope" in response.json()["errors"]["filter"]
    with pytest.raises(CommandError, match="none inside your scope"):
        call_command("rpc", "rpcutil", "ping", "-S", outside, "--user", acme_operator.username)
    assert not Job.objects.exists()
    refusals = AuditEvent.objects.filter(kind=Kind.JOB_REFUSED)
    assert refusals.count() == 3
    assert {event.data["source"] for event in refusals} == {"web", "api", "cli"}
    queued_tasks.assert_not_called()


def test_a_job_reaching_no_node_is_refused_with_the_reason(
    web_fleet: None, operator: User, queued_tasks
) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Token {issue_token(operator.username)}")
    response = api.post("/api/jobs/", {"agent": "rpcutil", "action": "ping", "filter": "role=db"},
                        content_type="application/json")  # fmt: skip
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "filter": "no node matches this filter; nothing would be sent"
    }
    assert not Job.objects.exists()


def test_a_target_that_changed_since_confirmation_is_confirmed_again(
    web_fleet: None, operator: User, queued_tasks
) -> None:
    client = _client(operator)
    post = {"agent_action": "rpcutil.ping", "filter": "role=web", "confirmed": "1",
            "planned_count": "6"}  # fmt: skip
    page = client.post("/jobs/new/", post)
    assert page.status_code == 400
    assert "the target changed since you confirmed: 7 nodes now, 6 then" in page.content.decode()
    assert 'name="planned_count" value="7"' in page.content.decode()
    assert not Job.objects.exists()


def test_the_plan_api_answers_bad_input_with_the_reason(operator: User) -> None:
    client = _client(operator)
    bad_filter = _plan(client, filter="role=web and")
    assert bad_filter["status"] == 400 and bad_filter["column"]
    unknown = client.get("/api/jobs/plan/", {"agent_action": "nosuch.ping"})
    assert unknown.status_code == 400 and "unknown agent" in unknown.json()["error"]
    bad_limit = _plan(client, **{"option:limit": "9" * 5000})
    assert bad_limit["status"] == 400 and "options.limit" in bad_limit["errors"]
