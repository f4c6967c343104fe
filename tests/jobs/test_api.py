"""The JSON API: token auth, 201 on submit, 400 with reasons on bad input, visibility."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from portal.accounts.services import issue_token
from portal.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(operator) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(operator.username)}")
    return client


def test_submit_returns_201_with_the_job_id(fleet: list[str], api, queued_tasks) -> None:
    response = api.post(
        "/api/jobs/",
        {"agent": "rpcutil", "action": "ping", "filter": "customer=acme and /web/"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get()
    assert body["id"] == job.pk
    assert body["status"] == "queued"
    assert body["filter"] == "customer=acme and /web/"
    queued_tasks.assert_called_once()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"agent": "rpcutil", "action": "ping", "filter": "customer=="}, "filter"),
        ({"agent": "rpcutil", "action": "ping", "filter": "(a=1"}, "filter"),
        ({"agent": "ghost", "action": "ping"}, "agent"),
        ({"agent": "rpcutil", "action": "ghost"}, "action"),
        ({"agent": "rpcutil", "action": "get_fact", "inputs": {}}, "inputs.fact"),
        ({"action": "ping"}, "agent"),
        ({"agent": "rpcutil", "action": "ping", "inputs": "x"}, "inputs"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_queues_nothing(
    api, queued_tasks, payload, field
) -> None:
    response = api.post("/api/jobs/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Job.objects.count() == 0
    queued_tasks.assert_not_called()


def test_token_is_required() -> None:
    response = APIClient().post("/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json")
    assert response.status_code == 401


def test_wrong_token_is_refused() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/jobs/").status_code == 401


def test_job_detail_shows_status_counts_and_replies(fleet: list[str], api, queued_tasks) -> None:
    job_id = api.post("/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json").json()[
        "id"
    ]
    body = api.get(f"/api/jobs/{job_id}/").json()
    assert body["id"] == job_id
    assert body["counts"] == {
        "expected": 0,
        "replied": 0,
        "ok": 0,
        "failed": 0,
        "waiting": 0,
        "no_response": 0,
        "not_sent": 0,
    }
    assert body["replies"] == []


def test_operators_do_not_see_each_others_jobs(
    fleet: list[str], api, other_operator, queued_tasks
) -> None:
    job_id = api.post("/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json").json()[
        "id"
    ]
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(other_operator.username)}")
    assert other.get(f"/api/jobs/{job_id}/").status_code == 404
    assert other.get("/api/jobs/").json()["results"] == []
