"""The operator pages: login required, the form refuses bad input next to the field."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from portal.inventory.models import Node
from portal.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_pages_need_a_login() -> None:
    response = Client().get("/jobs/new/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_form_lists_actions_from_the_ddls(browser) -> None:
    page = browser.get("/jobs/new/").content.decode()
    assert 'value="rpcutil.ping"' in page
    assert 'value="rpcutil.inventory"' in page
    assert (
        'name="input:rpcutil.get_fact:fact"' in page
    )  # rpcutil get_fact's input, generated from its DDL


def register(count: int, **facts: str) -> None:
    """``count`` fresh inventory nodes, alternating between datacenters a and b."""
    now = timezone.now()
    Node.objects.bulk_create(
        Node(
            identity=f"n{i:03d}.example",
            facts={"datacenter": "ab"[i % 2], **facts},
            first_seen=now,
            last_seen=now,
            registered_at=now,
        )
        for i in range(count)
    )


def test_the_form_asks_for_confirmation_with_the_count_by_datacenter(browser, queued_tasks) -> None:
    register(5, customer="acme")
    post = {"agent_action": "rpcutil.ping", "filter": "customer=acme"}
    page = browser.post("/jobs/new/", post)
    assert page.status_code == 200
    html = page.content.decode()
    assert "on 5 nodes?" in html
    assert "datacenter a: 3" in html and "datacenter b: 2" in html
    assert 'name="confirmed" value="1"' in html and "typed_count" not in html
    assert Job.objects.count() == 0
    queued_tasks.assert_not_called()


def test_above_the_threshold_the_count_must_be_typed(browser, queued_tasks, settings) -> None:
    settings.SWITCHBOARD_CONFIRM_ABOVE = 3
    register(5, customer="acme")
    post = {
        "agent_action": "rpcutil.ping",
        "filter": "customer=acme",
        "confirmed": "1",
        "planned_count": "5",
    }
    page = browser.post("/jobs/new/", post)
    assert page.status_code == 400
    assert "type 5 to run on 5 nodes" in page.content.decode()
    assert Job.objects.count() == 0
    response = browser.post("/jobs/new/", {**post, "typed_count": "5"})
    assert response.status_code == 302
    assert Job.objects.count() == 1


def test_submit_redirects_to_the_live_job_page(fleet: list[str], browser, queued_tasks) -> None:
    response = browser.post(
        "/jobs/new/",
        {
            "agent_action": "rpcutil.ping",
            "filter": "customer=acme",
            "confirmed": "1",
            "planned_count": "3",
        },
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    page = browser.get(response["Location"]).content.decode()
    assert "customer=acme" in page
    assert f'<script id="job-id" type="application/json">{job.pk}</script>' in page


@pytest.mark.parametrize(
    ("post", "message"),
    [
        ({"agent_action": "rpcutil.ping", "filter": "customer=acme and"}, "column"),
        ({"agent_action": "nosuch.ping", "filter": ""}, "unknown agent"),
        (
            {"agent_action": "rpcutil.get_fact", "filter": ""},
            '<span class="error field-error" role="alert">is required</span>',
        ),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_queued(
    browser, queued_tasks, post, message
) -> None:
    response = browser.post("/jobs/new/", post)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'class="error' in response.content.decode()
    assert Job.objects.count() == 0
    queued_tasks.assert_not_called()


def test_only_the_chosen_actions_inputs_are_read(fleet: list[str], browser, queued_tasks) -> None:
    # A browser without JavaScript posts every action's fields.
    response = browser.post(
        "/jobs/new/",
        {
            "agent_action": "rpcutil.get_fact",
            "input:rpcutil.get_fact:fact": "os",
            "input:echo.echo:message": "not mine",
            "confirmed": "1",
            "planned_count": "3",
        },
    )
    assert response.status_code == 302
    assert Job.objects.get().inputs == {"fact": "os"}


def test_run_again_on_silent_nodes_prefills_the_form(
    fleet: list[str], browser, operator, queued_tasks
) -> None:
    browser.post(
        "/jobs/new/",
        {
            "agent_action": "rpcutil.get_fact",
            "input:rpcutil.get_fact:fact": "os",
            "confirmed": "1",
            "planned_count": "3",
        },
    )
    job = Job.objects.get()
    job.status, job.no_response = Job.Status.COMPLETED, ["n1.example", "n2.example"]
    job.save()
    page = browser.get(f"/jobs/new/?rerun={job.pk}&only=no_response").content.decode()
    assert 'value="identity:n1.example or identity:n2.example"' in page
    assert '<option value="rpcutil.get_fact" selected>' in page
    assert 'name="input:rpcutil.get_fact:fact"' in page and 'value="os"' in page


def test_cancel_from_the_page(fleet: list[str], browser, queued_tasks) -> None:
    browser.post(
        "/jobs/new/", {"agent_action": "rpcutil.ping", "confirmed": "1", "planned_count": "3"}
    )
    job = Job.objects.get()
    # The button asks first, saying what cancelling does; only the confirmed POST cancels.
    asked = browser.post(f"/jobs/{job.pk}/cancel/")
    assert asked.status_code == 200 and f"Cancel job {job.pk}?" in asked.content.decode()
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and not job.cancel_requested
    response = browser.post(f"/jobs/{job.pk}/cancel/", {"confirmed": "1"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
