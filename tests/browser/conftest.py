"""Fixtures for the browser tests: one embedded stack and one Chromium per module.

Each test gets a fresh browser context (its own cookies); ``page`` is already logged in as the
operator, through the login form once per module. When a test fails, a screenshot of its page
is saved next to its tmp_path and the path is printed in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.portal import PortalStack
from harness.services import require_service
from tests.browser import support

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Response

DEFAULT_TIMEOUT_MS = 15_000


def _require_browser() -> None:
    require_service("Chromium", support.browser_available(), "run scripts/install-browser")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalStack]:
    _require_browser()  # before starting anything: a skip should cost nothing
    with support.stack_for_browser(tmp_path_factory.mktemp("browser-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(portal: PortalStack) -> dict[str, dict[str, Any]]:
    """Every node's facts, by identity: the ground truth the pages are checked against."""
    facts = support.inventory(portal)
    assert len(facts) == support.NODE_COUNT
    return facts


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _require_browser()
    from playwright.sync_api import expect

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with support.chromium() as running:
        yield running


@pytest.fixture(scope="module")
def operator_state(browser: Browser, portal: PortalStack) -> dict[str, Any]:
    """The cookies of a session logged in through the form, for every ``page`` to reuse."""
    context = support.new_context(browser, portal.base_url)
    try:
        page = context.new_page()
        support.log_in(page)
        return context.storage_state()
    finally:
        context.close()


def _page(browser: Browser, portal: PortalStack, request: pytest.FixtureRequest, **kw: Any):
    context = support.new_context(browser, portal.base_url, **kw)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    # What a page should never produce: script errors, and failed subresources (stylesheet,
    # script, ...). Pages themselves may answer 400 (a rejected form) and Chromium's automatic
    # /favicon.ico request is not the page's doing.
    console_errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            console_errors.append(msg.text)

    def on_response(response: Response) -> None:
        request_ = response.request
        if (
            response.status >= 400
            and request_.resource_type != "document"
            and not request_.url.endswith("/favicon.ico")
            # The live filter preview (the inventory's, and the job form's plan) answers a bad
            # filter with a 400 and its reason.
            and not (response.status == 400 and _is_live_preview(request_.url))
        ):
            console_errors.append(f"{response.status} {request_.method} {request_.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
    page.on("response", on_response)
    page.console_errors = console_errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and not page.is_closed():
            shot = Path(request.node.stash[_TMP]) / "failure.png"
            page.screenshot(path=shot, full_page=True)
            print(f"\nscreenshot of the failing page: {shot}\nURL: {page.url}")
        context.close()


_TMP = pytest.StashKey[str]()


def _is_live_preview(url: str) -> bool:
    return "/api/inventory/preview/" in url or "/api/jobs/plan/" in url


@pytest.fixture
def page(
    browser: Browser,
    portal: PortalStack,
    operator_state: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Page]:
    """A page in a fresh context, logged in as the operator."""
    request.node.stash[_TMP] = str(tmp_path)
    yield from _page(browser, portal, request, storage_state=operator_state)


@pytest.fixture
def admin_page(
    browser: Browser, portal: PortalStack, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """A page in a fresh context, logged in as the demo's admin through the form."""
    request.node.stash[_TMP] = str(tmp_path)
    for page in _page(browser, portal, request):
        support.log_in(page, "admin")
        yield page


@pytest.fixture
def anonymous_page(
    browser: Browser, portal: PortalStack, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """A page in a fresh context with no session."""
    request.node.stash[_TMP] = str(tmp_path)
    yield from _page(browser, portal, request)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
