"""The job page tells the truth, in a real browser (issue 14): a cancel asks first and ends
the job cancelled with its never-sent nodes as *not sent*; a silent node is *waiting* with a
countdown until its wait ends, then *no response*; an approver's decision reaches the
requester's open page live; a job waiting for approval can be withdrawn."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from agents.protocol.security import SigningKey
from harness.portal import PortalStack
from harness.replies import expected_by_fact
from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

FINISH_TIMEOUT_MS = 60_000


def _submit(portal: PortalStack, **payload: Any) -> int:
    job = {"agent": "rpcutil", "action": "ping", "filter": "customer=acme", **payload}
    response = portal.api("POST", "/api/jobs/", json=job)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_cancel_asks_first_then_the_job_ends_cancelled_with_unsent_nodes_not_sent(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]]
) -> None:
    acme = expected_by_fact(inventory, "customer", "acme")
    assert len(acme) >= 4
    job_id = _submit(portal, options={"batch_size": 2, "batch_sleep": 60})
    page.goto(f"/jobs/{job_id}/")
    expect(page.locator("#count-ok")).to_have_text("2", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#count-not_sent")).to_have_text(str(len(acme) - 2))
    expect(page.locator("#label-not_sent")).to_have_text("not sent yet")

    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_role("heading", name=f"Cancel job {job_id}?")).to_be_visible()
    expect(page.locator("#cancel-confirm")).to_contain_text(
        f"{len(acme) - 2} nodes not sent yet will not be sent"
    )
    assert portal.api("GET", f"/api/jobs/{job_id}/").json()["status"] == "running"  # asked only
    page.get_by_role("button", name=f"Cancel job {job_id}").click()

    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}/$"))
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#job-error")).to_contain_text("cancelled by noc after batch 1 of")
    expect(page.locator("#count-not_sent")).to_have_text(str(len(acme) - 2))
    expect(page.locator("#label-not_sent")).to_have_text("not sent")
    expect(page.locator("#count-no_response")).to_have_text("0")
    expect(page.locator("#not-sent")).to_be_visible()
    expect(page.locator("#rerun-no-response")).to_be_hidden()
    expect(page.locator("#cancel-form")).to_be_hidden()


def test_a_silent_node_is_waiting_with_a_countdown_then_no_response(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]]
) -> None:
    # A node that registers (and is accepted) but runs no daemon: it never answers.
    silent = "silent-acme.example"
    support.register_node(portal, silent, SigningKey.generate(), customer="acme")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "pending" not in portal.manage("nodes", "pending"):
        time.sleep(0.3)
    portal.manage("nodes", "accept", silent)

    job_id = _submit(portal, filter=f"identity:{silent} or customer=acme")
    page.goto(f"/jobs/{job_id}/")
    expect(page.locator("#count-waiting")).to_have_text("1", timeout=FINISH_TIMEOUT_MS)
    countdown = page.locator("#countdown")
    expect(countdown).to_contain_text(re.compile(r"waiting for 1 more: up to [1-5] s"))
    expect(page.locator("#count-no_response")).to_have_text("0")
    # rpcutil's wait is 5 s: then the silent node is no response, and the countdown is gone.
    expect(page.locator("#job-status")).to_have_text("completed", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#count-no_response")).to_have_text("1")
    expect(page.locator("#count-waiting")).to_have_text("0")
    expect(countdown).to_be_hidden()
    expect(page.locator("#no-response-list")).to_have_text(silent)
    portal.manage("nodes", "revoke", silent)  # out of the other tests' counts
    portal.manage("nodes", "forget", silent)


@pytest.fixture
def four_eyes(portal: PortalStack) -> Iterator[None]:
    """The demo's noc role needs a manager's approval for rpcutil while the test runs."""
    code = (
        "from portal.rbac.services import GrantSpec, set_grant; "
        "set_grant(GrantSpec('acme-noc', 'rpcutil', None, 'customer=acme', approval='{}'),"
        " actor=None)"
    )
    portal.manage("shell", "-c", code.format("always"))
    yield
    portal.manage("shell", "-c", code.format("never"))


def _decide_as_manager(portal: PortalStack, job_id: int, decision: str, comment: str) -> None:
    portal.login("manager")
    response = portal.session.post(
        f"{portal.base_url}/jobs/{job_id}/decide/",
        data={"csrfmiddlewaretoken": portal.session.cookies["csrftoken"],
              "decision": decision, "comment": comment},
        headers={"Referer": f"{portal.base_url}/jobs/{job_id}/"},
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text[:500]


def test_the_decision_reaches_the_requesters_open_page_live(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]], four_eyes: None
) -> None:
    job_id = _submit(portal)
    page.goto(f"/jobs/{job_id}/")
    expect(page.locator("#job-status")).to_have_text("pending_approval")
    expect(page.locator("#progress-text")).to_have_text(
        "waiting for approval: nothing is sent before"
    )
    expect(page.locator("#stream-state")).to_contain_text("shows the decision")
    expect(page.get_by_role("button", name="Withdraw job")).to_be_visible()

    _decide_as_manager(portal, job_id, "reject", "not during the freeze")
    # No reload: the frame pushed on the decision updates the badge and the approval card.
    expect(page.locator("#job-status")).to_have_text("rejected")
    expect(page.locator("#approval-state")).to_have_text("rejected")
    expect(page.locator("#approval-decision")).to_contain_text("Rejected by manager")
    expect(page.locator("#approval-decision")).to_contain_text("not during the freeze")
    expect(page.locator("#cancel-form")).to_be_hidden()


def test_the_requester_withdraws_a_job_waiting_for_approval(
    page: Page, portal: PortalStack, inventory: dict[str, dict[str, Any]], four_eyes: None
) -> None:
    job_id = _submit(portal)
    page.goto(f"/jobs/{job_id}/")
    page.get_by_role("button", name="Withdraw job").click()
    expect(page.get_by_role("heading", name=f"Withdraw job {job_id}?")).to_be_visible()
    page.get_by_role("button", name=f"Withdraw job {job_id}").click()
    expect(page.locator(".message")).to_contain_text(f"Job {job_id} withdrawn")
    expect(page.locator("#job-status")).to_have_text("withdrawn")
    expect(page.locator("#approval-state")).to_have_text("withdrawn")

    portal.login("manager")
    queue = portal.session.get(f"{portal.base_url}/approvals/", timeout=10).text
    assert f"/jobs/{job_id}/" not in queue
    job = portal.api("GET", f"/api/jobs/{job_id}/").json()
    assert job["status"] == "withdrawn" and job["replies"] == []
