"""Roles in a real browser: noc sees only its actions and its scope; an admin edits the scope of
a grant with the filter builder, and noc's next confirmation shows the narrower scope."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from harness.portal import PortalStack

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]


def _acme_count(portal: PortalStack, extra: dict[str, Any] | None = None) -> int:
    nodes = portal.stored_nodes()
    wanted = {"customer": "acme", **(extra or {})}
    return sum(all(f.get(k) == v for k, v in wanted.items()) for f in nodes.values())


def test_noc_is_offered_only_its_actions_and_sees_its_scope(
    page: Page, portal: PortalStack, inventory: dict
) -> None:
    page.goto("/jobs/new/")
    options = page.locator("#agent-action option").all_inner_texts()
    assert "service restart" in options and "rpcutil ping" in options
    assert "service stop" not in options and not any(o.startswith("package") for o in options)
    page.get_by_role("radio", name="Text").click()
    page.locator("#filter").fill("")
    page.locator("#agent-action").select_option(label="rpcutil ping")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#confirm-scope")).to_contain_text("customer==acme")
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        re.compile(rf"on {_acme_count(portal)} nodes?\?")
    )
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_an_admin_narrows_a_scope_with_the_builder(
    admin_page: Page, page: Page, portal: PortalStack, inventory: dict
) -> None:
    admin_page.goto("/access/")
    admin_page.locator('tr[data-role="acme-noc"] td[data-agent="rpcutil"] a').click()
    expect(admin_page.get_by_role("heading", level=1)).to_contain_text("acme-noc")
    expect(admin_page.locator("#filter-builder")).to_be_visible()  # the scope in builder rows
    expect(admin_page.locator("#filter")).to_have_value("customer=acme")
    admin_page.get_by_role("radio", name="Text").click()
    admin_page.locator("#filter").fill("customer=acme and datacenter=a")
    expect(admin_page.locator("#filter-preview-count")).to_have_text(
        re.compile(rf"^{_acme_count(portal, {'datacenter': 'a'})} matching nodes?")
    )
    admin_page.get_by_role("radio", name="Builder").click()  # it fits the rows: kept
    expect(admin_page.locator("#filter")).to_have_value("customer=acme and datacenter=a")
    admin_page.get_by_role("button", name="Save grant").click()
    expect(admin_page).to_have_url(re.compile(r"/access/$"))
    cell = admin_page.locator('tr[data-role="acme-noc"] td[data-agent="rpcutil"]')
    expect(cell).to_contain_text("customer=acme and datacenter=a")

    page.goto("/jobs/new/?agent_action=rpcutil.ping")
    page.get_by_role("radio", name="Text").click()
    page.locator("#filter").fill("")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#confirm-scope")).to_contain_text("customer==acme and datacenter==a")
    narrower = _acme_count(portal, {"datacenter": "a"})
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        re.compile(rf"on {narrower} nodes?\?")
    )
    assert admin_page.console_errors == []  # type: ignore[attr-defined]
