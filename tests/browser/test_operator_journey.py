"""An operator's journey in a real browser (Debian Chromium via Playwright) on a real stack.

Log in through the form, run an action from the job form, watch the replies stream into the
job page over the WebSocket, get a malformed filter rejected on the form, and run an action
whose input field is generated from the agent's DDL. The numbers on the pages are checked
against an ``rpcutil inventory`` run through the API.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, expect

from harness.portal import PASSWORD, PortalStack
from harness.replies import expected_by_fact
from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(600)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")
FORM_URL = re.compile(r"/jobs/new/$")
FINISH_TIMEOUT_MS = 60_000


def _record_websocket_frames(page: Page) -> list[dict[str, Any]]:
    """Every JSON message the page's WebSockets receive from now on, in order."""
    messages: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        def on_frame(payload: str | bytes) -> None:
            messages.append(json.loads(payload))

        socket.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return messages


def _open_job_form(page: Page) -> None:
    page.goto("/")
    page.locator("header nav").get_by_role("link", name="Run an action").click()
    expect(page).to_have_url(FORM_URL)
    expect(page.get_by_role("heading", name="Run an action")).to_be_visible()


def _submit_expecting_job(page: Page) -> int:
    """Run from the form, through the confirmation page, to the new job's page."""
    page.get_by_role("button", name="Run", exact=True).click()
    confirm = page.get_by_role("button", name=re.compile(r"^Run on \d+ nodes?$"))
    expect(confirm).to_be_visible()
    with page.expect_navigation(url=JOB_URL):
        confirm.click()
    match = JOB_URL.search(page.url)
    assert match, page.url
    return int(match.group(1))


def _job_ids(portal: PortalStack) -> set[int]:
    response = portal.api("GET", "/api/jobs/")
    assert response.status_code == 200, response.text
    return {job["id"] for job in response.json()["results"]}


def _row_identities(page: Page) -> list[str]:
    return page.locator("#replies tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.identity)"
    )


def _expect_finished(page: Page, expected: int) -> None:
    """The job page shows a completed job with ``expected`` OK replies and nobody missing."""
    expect(page.locator("#job-status")).to_have_text("completed", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_have_class(re.compile(r"\bstatus-completed\b"))
    expect(page.locator("#stream-state")).to_have_text("finished")
    expect(page.locator("#replies tbody tr")).to_have_count(expected)
    expect(page.locator("#count-expected")).to_have_text(str(expected))
    expect(page.locator("#count-replied")).to_have_text(str(expected))
    expect(page.locator("#count-ok")).to_have_text(str(expected))
    expect(page.locator("#count-failed")).to_have_text("0")
    expect(page.locator("#count-no_response")).to_have_text("0")
    expect(page.locator("#no-response")).to_be_hidden()
    expect(page.locator("#job-error")).to_be_hidden()


def test_operator_logs_in_through_the_form(anonymous_page: Page) -> None:
    page = anonymous_page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))

    page.get_by_label("Username").fill(support.OPERATOR)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation(url=re.compile(r"/$")):
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("header .whoami")).to_contain_text(support.OPERATOR)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_ping_by_fact_streams_replies_live(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]]
) -> None:
    acme = expected_by_fact(inventory, "customer", "acme")
    assert 0 < len(acme) < support.NODE_COUNT  # the filter really selects (and "acmeinc" exists)

    _open_job_form(page)
    page.locator("#filter").fill("customer=acme")
    page.locator("#agent-action").select_option(label="rpcutil ping")
    expect(page.locator('fieldset[data-action="rpcutil.ping"]')).to_be_visible()
    # Broadcast discovery (from the form's options) pings first and takes its timeout, so the
    # page is connected before the replies come: they must then arrive as live frames.
    page.get_by_text("Options: collective, discovery, batches, limit").click()
    # Every node (the main collective) unless a datacenter's sub-collective is chosen.
    expect(page.locator("#option-collective option")).to_have_text(
        ["mcollective (every node)", "dc_a", "dc_b"]
    )
    page.locator("#option-discovery").select_option("broadcast")
    frames = _record_websocket_frames(page)
    job_id = _submit_expecting_job(page)

    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Job {job_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("rpcutil ping")
    expect(page.locator("#replies tbody tr").first).to_be_visible(timeout=FINISH_TIMEOUT_MS)
    _expect_finished(page, len(acme))
    assert set(_row_identities(page)) == acme
    expect(page.locator("#replies tbody tr td.status-ok")).to_have_count(len(acme))

    # Live: at least one reply reached the page in a frame pushed after it had connected,
    # not only in the snapshot sent on connect.
    assert frames and frames[0]["type"] == "job.snapshot", frames[:1]
    streamed = {r["identity"] for m in frames if m["type"] == "job.frame" for r in m["replies"]}
    assert streamed, "every reply came in the snapshot; nothing was streamed"
    assert streamed <= acme

    detail = portal.api("GET", f"/api/jobs/{job_id}/").json()
    assert detail["status"] == "completed"
    assert detail["filter"] == "customer=acme"
    assert detail["discovery_method"] == "broadcast"
    assert detail["counts"]["expected"] == len(acme)
    assert {reply["identity"] for reply in detail["replies"]} == acme
    assert page.console_errors == []  # type: ignore[attr-defined]

    # The new job heads the job list, with the same numbers.
    page.locator("header nav").get_by_role("link", name="Jobs").click()
    row = page.locator("table.grid tbody tr").first
    expect(row.get_by_role("link", name=str(job_id), exact=True)).to_be_visible()
    expect(row).to_contain_text("rpcutil.ping")
    expect(row).to_contain_text("customer=acme")
    expect(row.locator(".status")).to_have_text("completed")
    expect(row.locator("td.num").nth(0)).to_have_text(str(len(acme)))
    expect(row.locator("td.num").nth(1)).to_have_text(str(len(acme)))


def test_malformed_filter_is_rejected_on_the_form(page: Page, portal: PortalStack) -> None:
    jobs_before = _job_ids(portal)
    _open_job_form(page)
    page.locator("#filter").fill("customer=acme and")
    page.locator("#agent-action").select_option(label="rpcutil ping")
    with page.expect_response(
        lambda r: r.request.method == "POST" and FORM_URL.search(r.url) is not None
    ) as posted:
        page.get_by_role("button", name="Run").click()
    assert posted.value.status == 400

    expect(page).to_have_url(FORM_URL)
    error = page.locator('[role="alert"][data-field="filter"]')
    expect(error).to_be_visible()
    expect(error).to_contain_text("column 18")
    expect(error).to_contain_text("expected a filter term")
    # What the operator typed and chose is still there to be fixed.
    expect(page.locator("#filter")).to_have_value("customer=acme and")
    expect(page.locator("#agent-action")).to_have_value("rpcutil.ping")
    assert _job_ids(portal) == jobs_before
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_action_input_comes_from_the_ddl(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]]
) -> None:
    acme = expected_by_fact(inventory, "customer", "acme")
    _open_job_form(page)
    fact = page.get_by_label("The name of the fact")
    expect(fact).to_be_hidden()  # the default action (ping) takes no inputs

    page.locator("#agent-action").select_option(label="rpcutil get_fact")
    fieldset = page.locator('fieldset[data-action="rpcutil.get_fact"]')
    expect(fieldset).to_be_visible()
    expect(fieldset).to_contain_text("Retrieve a single fact from the node")
    expect(page.locator('fieldset[data-action="rpcutil.ping"]')).to_be_hidden()
    expect(fact).to_be_visible()
    expect(fact).to_have_attribute("name", "input:rpcutil.get_fact:fact")
    expect(fact).to_have_attribute("maxlength", "90")
    expect(fieldset.locator("label")).to_contain_text("The name of the fact *")  # required
    expect(fieldset).to_contain_text("The fact to retrieve (dotted for nested facts)")

    page.locator("#filter").fill("customer=acme")
    fact.fill("customer")
    job_id = _submit_expecting_job(page)
    expect(page.locator("dl.facts")).to_contain_text("customer")
    _expect_finished(page, len(acme))
    assert set(_row_identities(page)) == acme
    data = [json.loads(cell) for cell in page.locator("#replies tbody td.data").all_inner_texts()]
    assert data == [{"fact": "customer", "value": "acme"}] * len(acme)

    detail = portal.api("GET", f"/api/jobs/{job_id}/").json()
    assert detail["inputs"] == {"fact": "customer"}
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_missing_required_input_is_shown_on_its_field(page: Page, portal: PortalStack) -> None:
    jobs_before = _job_ids(portal)
    _open_job_form(page)
    page.locator("#agent-action").select_option(label="rpcutil get_fact")
    fact = page.locator('[name="input:rpcutil.get_fact:fact"]')
    page.get_by_role("button", name="Run").click()
    # The browser itself refuses first: the DDL marks the input required.
    assert fact.evaluate("el => el.validity.valueMissing") is True
    assert _job_ids(portal) == jobs_before

    # Without the browser's check (an old browser, a script), the server refuses it too.
    fact.evaluate("el => el.removeAttribute('required')")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(FORM_URL)
    fieldset = page.locator('fieldset[data-action="rpcutil.get_fact"]')
    expect(fieldset).to_be_visible()  # the form comes back on the action that was chosen
    expect(fieldset.locator(".field-error")).to_have_text("is required")
    assert _job_ids(portal) == jobs_before
    assert page.console_errors == []  # type: ignore[attr-defined]
