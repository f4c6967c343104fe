"""Enrolment in a real browser: an admin finds new nodes and a key conflict, accepts one node,
rejects another, and sees each decision said on the page; an operator finds no such page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from agents.protocol.security import SigningKey
from harness.portal import PortalStack
from tests.browser import support
from tests.integration.wire import eventually

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]


def enrolment_state(portal: PortalStack, identity: str) -> str | None:
    rows = portal.query("SELECT state FROM inventory_enrolment WHERE identity = %s", identity)
    return rows[0][0] if rows else None


def test_an_admin_accepts_rejects_and_sees_a_conflict(
    admin_page: Page, portal: PortalStack, inventory: dict, tmp_path: Path
) -> None:
    newcomer, stranger = "web77.newdc.example", "unknown42.example"
    newcomer_key = SigningKey.generate()
    support.register_node(portal, newcomer, newcomer_key, customer="acme", datacenter="newdc")
    support.register_node(portal, stranger, SigningKey.generate(), customer="who")
    victim = sorted(inventory)[0]
    impostor = SigningKey.generate()
    support.register_node(portal, victim, impostor, customer="evil")
    assert eventually(
        lambda: (
            enrolment_state(portal, newcomer) == enrolment_state(portal, stranger) == "pending"
            and portal.query(
                "SELECT conflict_key_id FROM inventory_enrolment WHERE identity = %s", victim
            )[0][0]
            == impostor.key_id
        ),
        30,
    )

    page = admin_page
    page.get_by_role("link", name="Enrolment").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Node enrolment")
    pending = page.locator("#pending")
    expect(pending.locator(f'tr[data-identity="{newcomer}"]')).to_contain_text(newcomer_key.key_id)
    expect(pending.locator(f'tr[data-identity="{newcomer}"]')).to_contain_text("customer=acme")
    expect(page.locator(f'#conflicts tr[data-identity="{victim}"]')).to_contain_text(
        impostor.key_id
    )
    page.screenshot(path=tmp_path / "enrolment.png", full_page=True)

    page.get_by_role("button", name=f"Accept {newcomer}").click()
    expect(page.locator("#messages")).to_contain_text(
        f"{newcomer} accepted: its key {newcomer_key.key_id} is pinned."
    )
    expect(pending.locator(f'tr[data-identity="{newcomer}"]')).to_have_count(0)
    page.get_by_role("button", name=f"Reject {stranger}").click()
    expect(page.locator("#messages")).to_contain_text(f"{stranger} rejected")
    expect(page.locator(f'#refused-nodes tr[data-identity="{stranger}"]')).to_contain_text(
        "rejected"
    )
    assert enrolment_state(portal, newcomer) == "accepted"
    assert newcomer in portal.stored_nodes()

    # The conflict on the node's own page: the trusted key kept, the facts untouched.
    page.goto(f"/inventory/{victim}/")
    expect(page.locator("#key-conflict")).to_contain_text(impostor.key_id)
    expect(page.locator("#facts")).not_to_contain_text("evil")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_an_operator_has_no_enrolment_page(page: Page) -> None:
    page.goto("/inventory/")
    expect(page.get_by_role("link", name="Enrolment")).to_have_count(0)
    response = page.goto("/enrolment/")
    assert response is not None and response.status == 403
