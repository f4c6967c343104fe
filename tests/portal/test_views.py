"""The operator pages: login required, the form refuses bad input next to the field."""

from __future__ import annotations

import pytest
from django.test import Client

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


def test_submit_redirects_to_the_live_job_page(browser, queued_tasks) -> None:
    response = browser.post(
        "/jobs/new/", {"agent_action": "rpcutil.ping", "filter": "customer=acme"}
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


def test_only_the_chosen_actions_inputs_are_read(browser, queued_tasks) -> None:
    # A browser without JavaScript posts every action's fields.
    response = browser.post(
        "/jobs/new/",
        {
            "agent_action": "rpcutil.get_fact",
            "input:rpcutil.get_fact:fact": "os",
            "input:echo.echo:message": "not mine",
        },
    )
    assert response.status_code == 302
    assert Job.objects.get().inputs == {"fact": "os"}


def test_run_again_on_silent_nodes_prefills_the_form(browser, operator, queued_tasks) -> None:
    browser.post(
        "/jobs/new/", {"agent_action": "rpcutil.get_fact", "input:rpcutil.get_fact:fact": "os"}
    )
    job = Job.objects.get()
    job.status, job.no_response = Job.Status.COMPLETED, ["n1.example", "n2.example"]
    job.save()
    page = browser.get(f"/jobs/new/?rerun={job.pk}&only=no_response").content.decode()
    assert 'value="identity:n1.example or identity:n2.example"' in page
    assert '<option value="rpcutil.get_fact" selected>' in page
    assert 'name="input:rpcutil.get_fact:fact"' in page and 'value="os"' in page


def test_cancel_from_the_page(browser, queued_tasks) -> None:
    browser.post("/jobs/new/", {"agent_action": "rpcutil.ping"})
    job = Job.objects.get()
    response = browser.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
