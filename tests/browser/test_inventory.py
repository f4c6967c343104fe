"""The inventory in a browser: the job form's live filter preview, the node list, a node page."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from harness.portal import PortalStack
from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

PREVIEW = "/api/inventory/preview/"


def _preview_api(portal: PortalStack, text: str) -> Any:
    """The preview as the operator (the demo's noc, who sees customer=acme only) asks it."""
    portal.login(support.OPERATOR)
    return portal.api("GET", PREVIEW, params={"filter": text})


@pytest.fixture(scope="module")
def registered(portal: PortalStack) -> int:
    """Waits until every simulated node has registered; returns the node count.

    Counted by the admin, who sees every node (the operator sees only their scope's).
    """
    portal.login("admin")
    deadline = time.monotonic() + 60
    count = -1
    while time.monotonic() < deadline:
        response = portal.session.get(portal.base_url + PREVIEW, params={"filter": ""}, timeout=30)
        assert response.status_code == 200, response.text
        count = response.json()["count"]
        if count >= support.NODE_COUNT:
            return count
        time.sleep(0.5)
    pytest.fail(f"only {count} of {support.NODE_COUNT} nodes registered within 60 s")


def test_job_form_previews_the_count_and_the_syntax_error(
    page: Page, portal: PortalStack, registered: int
) -> None:
    expected = _preview_api(portal, "customer=acme").json()
    assert 0 < expected["count"] < registered

    page.goto("/jobs/new/")
    box = page.locator("#filter-preview")
    field = page.locator("#filter")
    field.click()
    field.press_sequentially("customer=acme", delay=20)  # one fetch per pause, older ones aborted
    expect(page.locator("#filter-preview-count")).to_have_text(
        re.compile(rf"^{expected['count']} matching nodes?")
    )
    first = expected["nodes"][0]["identity"]
    expect(box.locator(".preview-identity").first).to_have_text(first)

    field.press_sequentially(" and", delay=20)
    error = page.locator("#filter-preview-error")
    expect(error).to_contain_text("expected a filter term")
    expect(error).to_contain_text("column 18")
    caret = page.locator("#filter-preview-caret")
    expect(caret).to_have_text(" " * 17 + "^")
    expect(field).to_have_attribute("aria-invalid", "true")

    field.fill("customer=nobody-has-this")
    expect(page.locator("#filter-preview-count")).to_contain_text("matches nothing")
    # The preview's own 400 for a malformed filter is its answer, not a failure of the page.
    errors = page.console_errors  # type: ignore[attr-defined]
    assert [e for e in errors if not re.match(rf"400 GET \S+{PREVIEW}\?", e)] == []


def test_inventory_list_search_and_node_page(
    page: Page, portal: PortalStack, registered: int
) -> None:
    expected = _preview_api(portal, "customer=acme").json()
    visible = _preview_api(portal, "").json()["count"]  # the operator's scope: customer=acme
    assert visible == expected["count"] < registered
    page.goto("/jobs/new/")
    page.get_by_role("link", name="Inventory").click()
    expect(page.get_by_role("heading", name="Inventory")).to_be_visible()
    expect(page.locator("#node-table tbody tr")).to_have_count(min(visible, 50))
    expect(page.locator("#inventory-scope")).to_have_text(
        f"Showing the {visible} nodes inside your scope: customer==acme"
    )

    page.locator("#filter").fill("customer=acme")
    page.locator("#columns").fill("customer,role,datacenter")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#node-table tbody tr")
    expect(rows).to_have_count(expected["count"])
    expect(page.locator("#node-table thead th")).to_have_text(
        ["Identity", "customer", "role", "datacenter", "Last seen"]
    )
    for n in range(expected["count"]):
        expect(rows.nth(n).locator("td").nth(1)).to_have_text("acme")

    identity = expected["nodes"][0]["identity"]
    page.get_by_role("link", name=identity, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(identity)
    facts = page.locator("#facts tbody tr th")
    names = facts.all_inner_texts()
    assert names == sorted(names) and "customer" in names
    expect(page.locator("#agents")).to_contain_text("rpcutil")
    assert page.console_errors == []  # type: ignore[attr-defined]
