"""Issue 17 in a real browser: an admin creates an account with a role; its owner signs in,
makes an API token and uses it on the API; the admin deactivates the account, and at once the
token is refused and the owner's open job page loses its live connection."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from playwright.sync_api import expect

from harness.portal import PortalStack
from tests.browser import support

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, WebSocket

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

USERNAME = "grace"
PASSWORD = "Xq9!browser-pass"


def _api(token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, path, headers={"Authorization": f"Token {token}"}, timeout=30, **kwargs
    )


def _wait_closed(page: Page, socket: WebSocket, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not socket.is_closed():
        assert time.monotonic() < deadline, "the page's WebSocket stayed open"
        page.wait_for_timeout(100)  # lets Playwright take the close event in


def test_an_account_from_creation_to_deactivation(
    admin_page: Page, browser: Browser, portal: PortalStack, inventory: dict
) -> None:
    # The admin creates the account with the demo's scoped role.
    admin_page.goto("/access/")
    admin_page.locator("nav.subnav").get_by_role("link", name="Users").click()
    admin_page.get_by_role("link", name="New user").click()
    admin_page.get_by_label("Username").fill(USERNAME)
    admin_page.get_by_label("First name").fill("Grace")
    admin_page.get_by_label("acme-noc").check()
    admin_page.get_by_label("set it now:").check()
    admin_page.get_by_label("Password", exact=True).fill(PASSWORD)
    admin_page.get_by_role("button", name="Create user").click()
    expect(admin_page.locator("#messages")).to_contain_text(f"Account {USERNAME} created.")
    admin_page.get_by_role("link", name="All users").click()
    admin_page.get_by_label("Name, username or e-mail").fill("grac")
    admin_page.get_by_role("button", name="Search").click()
    row = admin_page.locator(f'tr[data-user="{USERNAME}"]')
    expect(row.locator("td.roles")).to_have_text("acme-noc")
    expect(admin_page.locator("#users tbody tr")).to_have_count(1)

    # Its owner signs in in their own browser and makes a token.
    context = support.new_context(browser, portal.base_url)
    try:
        page = context.new_page()
        support.log_in(page, USERNAME, PASSWORD)
        page.get_by_role("link", name="API tokens").click()
        page.get_by_label("Name").fill("browser-test")
        page.get_by_label("Expires after").select_option("30")
        page.get_by_role("button", name="Make token").click()
        expect(page.locator("#new-token")).to_contain_text("shown only this once")
        token = page.locator("#new-token-secret").input_value()
        assert token.startswith("sbt_")
        page.goto("/account/tokens/")  # shown once: gone on the next visit
        expect(page.locator("#new-token-secret")).to_have_count(0)
        expect(page.locator("#tokens")).to_contain_text(token[:12])

        # The token works on the API: a job inside the role's scope.
        submitted = _api(token, "POST", portal.base_url + "/api/jobs/",
                         json={"agent": "rpcutil", "action": "ping"})  # fmt: skip
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]

        # Its owner watches the job live.
        with page.expect_websocket(lambda ws: f"/ws/jobs/{job_id}/" in ws.url) as opened:
            page.goto(f"/jobs/{job_id}/")
        socket = opened.value
        expect(page.locator("#stream-state")).to_have_text(re.compile("^(live|finished)"))
        assert not socket.is_closed()

        # The admin deactivates the account.
        row.get_by_role("link", name=USERNAME).click()
        admin_page.get_by_role("button", name="Deactivate").click()
        expect(admin_page.locator("#messages")).to_contain_text(
            f"{USERNAME} is deactivated and signed out everywhere"
        )

        # At once: the socket closes, the token is refused, the session is gone.
        _wait_closed(page, socket)
        refused = _api(token, "GET", portal.base_url + f"/api/jobs/{job_id}/")
        assert refused.status_code == 401, refused.text
        assert "revoked" in refused.json()["detail"]
        page.goto("/jobs/new/")
        expect(page).to_have_url(re.compile(r"/login/"))
    finally:
        context.close()

    admin_page.goto("/access/tokens/?state=revoked")
    expect(admin_page.locator("#tokens")).to_contain_text(token[:12])
    expect(admin_page.locator("#tokens")).to_contain_text("by admin")
    assert admin_page.console_errors == []  # type: ignore[attr-defined]
