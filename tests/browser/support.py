"""What the browser tests and the screenshot script share: the stack, the browser, the operator.

The stack is the embedded profile of tests/integration/test_pipe.py (coilmq broker, simulated
nodes, Celery worker, daphne, SQLite), started with the same harness helpers. The browser is
Debian's Chromium driven by the Playwright package (``scripts/install-browser``); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.protocol import Registration, connect, registration_queue
from agents.protocol.security import SigningKey, seal_registration
from harness.portal import PASSWORD, PortalStack
from harness.replies import replies_from_messages
from harness.stacks import embedded_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
NODE_COUNT = 30
OPERATOR = "noc"


def browser_available() -> bool:
    """Debian's Chromium and the Playwright package are both installed."""
    return CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None


@contextmanager
def stack_for_browser(tmp: Path, nodes: int = NODE_COUNT) -> Iterator[PortalStack]:
    """The embedded stack the browser tests drive (see ``embedded_stack``)."""
    yield from embedded_stack(tmp, nodes)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Debian Chromium under Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser, base_url: str, **kwargs: Any) -> BrowserContext:
    return browser.new_context(base_url=base_url, viewport=VIEWPORT, **kwargs)


def log_in(page: Page, username: str = OPERATOR, password: str = PASSWORD) -> None:
    """Log in through the login form, as an operator does; returns on the job list."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation(url="**/"):
        page.get_by_role("button", name="Log in").click()


def inventory(portal: PortalStack) -> dict[str, dict[str, Any]]:
    """Every node's facts, once all have registered (the inventory the portal targets from).

    An ``rpcutil inventory`` job runs first through the API, as the operator: it warms the
    whole pipe, and (the demo's noc being held to customer=acme) reaches acme nodes only.
    """
    portal.login(OPERATOR)
    response = portal.api("POST", "/api/jobs/", json={"agent": "rpcutil", "action": "inventory"})
    assert response.status_code == 201, response.text
    messages = portal.watch_job(response.json()["id"])
    replied = {reply["identity"] for _, reply in replies_from_messages(messages)}
    portal.wait_for_inventory(NODE_COUNT)
    nodes = portal.stored_nodes()
    assert replied == {i for i, facts in nodes.items() if facts.get("customer") == "acme"}
    return nodes


def register_node(portal: PortalStack, identity: str, key: SigningKey, **facts: str) -> None:
    """A node with no enrolment token registers (sealed with ``key``): it waits for an admin,
    or, under an identity the portal already trusts with another key, is a key conflict."""
    registration = Registration(
        identity=identity, collectives=["mcollective"], facts=dict(facts), classes=["base"],
        agents=["rpcutil"], msgtime=time.time(), public_key=key.public_pem(),
    )  # fmt: skip
    conn = connect(portal.env["STOMP_BROKERS"], None, None)
    try:
        conn.send(registration_queue("mcollective"), seal_registration(registration, key))
    finally:
        conn.disconnect()
