"""An action that changes nodes, in a real browser: Enter sends nothing, neither on the form nor
on the confirmation page; the count is typed for a restart on two nodes or more, the reason is
required, and only the button runs the job."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from harness.portal import PortalStack
from harness.replies import expected_by_fact
from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")
FINISH_TIMEOUT_MS = 60_000
# Long enough for a form submission that Enter would have started to show up as a request.
SETTLE_MS = 700


def _form_posts(page: Page) -> list[str]:
    """The URL of every form POST the page sends from now on."""
    posts: list[str] = []

    def on_request(request: Request) -> None:
        if request.method == "POST" and request.resource_type == "document":
            posts.append(request.url)

    page.on("request", on_request)
    return posts


def test_enter_never_runs_a_restart_and_the_page_asks_for_count_and_reason(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]]
) -> None:
    acme = expected_by_fact(inventory, "customer", "acme")
    assert len(acme) >= 2  # the typed count is asked for a restart on more than one node
    jobs_before = {job["id"] for job in portal.api("GET", "/api/jobs/").json()["results"]}

    page.goto("/jobs/new/")
    page.get_by_role("radio", name="Text").click()
    page.locator("#filter").fill("customer=acme")
    page.locator("#agent-action").select_option(label="service restart")
    fieldset = page.locator('fieldset[data-action="service.restart"]')
    expect(fieldset).to_be_visible()
    expect(fieldset.get_by_role("note")).to_contain_text("Changes the nodes.")
    service = fieldset.get_by_label("Service name")
    service.fill("nginx")
    posts = _form_posts(page)

    # On the form, Enter in a text field does not go on with an action that changes nodes.
    service.press("Enter")
    expect(page.locator("#enter-guard-hint")).to_contain_text("Enter does not send it")
    page.wait_for_timeout(SETTLE_MS)
    assert posts == []

    page.get_by_role("button", name="Run", exact=True).click()
    count = len(acme)
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"on {count} nodes?")
    expect(page.locator("#confirm-changes-node")).to_contain_text("This action changes the nodes.")
    assert len(posts) == 1  # the click, to the confirmation page
    reason = page.get_by_label("Reason or ticket *")
    typed = page.get_by_label(f"Type {count} to confirm")
    expect(reason).to_be_focused()
    expect(typed).to_be_visible()

    # Enter in the reason field, and in the count field once both are right, sends nothing.
    reason.fill("INC-4711: restart after the config change")
    reason.press("Enter")
    typed.fill(str(count))
    typed.press("Enter")
    page.wait_for_timeout(SETTLE_MS)
    assert len(posts) == 1

    # The reason is required: the button does not go on without it.
    reason.fill("")
    run = page.get_by_role("button", name=f"Run on {count} nodes")
    run.click()
    page.wait_for_timeout(SETTLE_MS)
    assert len(posts) == 1
    assert reason.evaluate("field => field.validity.valueMissing") is True

    # Reason and count given, the button runs it.
    reason.fill("INC-4711: restart after the config change")
    with page.expect_navigation(url=JOB_URL):
        run.click()
    match = JOB_URL.search(page.url)
    assert match, page.url
    job_id = int(match.group(1))
    expect(page.locator("#job-status")).to_have_text("completed", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#count-ok")).to_have_text(str(count))
    expect(page.locator("#job-reason")).to_have_text("INC-4711: restart after the config change")

    jobs_after = {job["id"] for job in portal.api("GET", "/api/jobs/").json()["results"]}
    assert jobs_after - jobs_before == {job_id}
    detail = portal.api("GET", f"/api/jobs/{job_id}/").json()
    assert (detail["agent"], detail["action"]) == ("service", "restart")
    assert {reply["identity"] for reply in detail["replies"]} == acme
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_a_status_on_the_form_still_goes_on_with_enter(page: Page, inventory: dict) -> None:
    # Actions that change nothing keep Enter: it only opens the confirmation page.
    page.goto("/jobs/new/")
    page.get_by_role("radio", name="Text").click()
    page.locator("#filter").fill("customer=acme")
    page.locator("#agent-action").select_option(label="service status")
    service = page.locator('fieldset[data-action="service.status"]').get_by_label("Service name")
    service.fill("nginx")
    service.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("service status")
    expect(page.locator("#confirm-changes-node")).to_have_count(0)
    assert support.OPERATOR  # logged in as the operator whose grant allows status and restart
