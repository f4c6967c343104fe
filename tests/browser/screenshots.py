"""Screenshots of the portal for the docs, light and dark, taken on a real embedded stack.

    python -m tests.browser.screenshots docs/screenshots

Starts the same stack as the browser tests (tests/browser/support.py), runs a few jobs so the
pages have something to show, and writes 1400x900 PNGs of the job form, the filter builder with
its autocomplete open, a finished job page, the job list, the inventory pages, the
enrolment page (two nodes waiting, a key conflict) and the Users page, each as
``<page>-light.png`` and ``<page>-dark.png``. Needs ``scripts/install-browser``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agents.protocol.security import SigningKey
from harness.portal import PortalStack
from tests.browser import support

if TYPE_CHECKING:
    from playwright.sync_api import Page

FINISH_TIMEOUT_MS = 60_000
JOB_URL = re.compile(r"/jobs/(\d+)/$")
# A superuser: every page and action shown is open to it, whatever the roles grant.
USER = "admin"


def _api_job(portal: PortalStack, **payload: object) -> int:
    """Submit through the logged-in session, so the jobs are the screenshots' user's own."""
    response = portal.session.post(
        portal.base_url + "/api/jobs/",
        json=payload,
        headers={
            "X-CSRFToken": portal.session.cookies["csrftoken"],
            "Referer": portal.base_url + "/",
        },
        timeout=30,
    )
    if response.status_code != 201:
        raise SystemExit(f"could not submit {payload}: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    portal.watch_job(job_id)
    return job_id


def _seed_jobs(portal: PortalStack) -> None:
    """A job list with some history: an inventory, a fact read, and failures."""
    portal.login(USER)
    _api_job(portal, agent="rpcutil", action="inventory")
    _api_job(
        portal,
        agent="rpcutil",
        action="get_fact",
        inputs={"fact": "os"},
        filter="datacenter=b and role=web",
    )
    _api_job(
        portal, agent="echo", action="fail", inputs={"kind": "aborted"}, filter="customer=globex"
    )


def _seed_enrolment(portal: PortalStack) -> None:
    """Two nodes waiting for an admin and a key conflict on an accepted node."""
    support.register_node(
        portal, "web77.newdc.example", SigningKey.generate(), customer="acme", datacenter="newdc"
    )
    support.register_node(portal, "unknown42.example", SigningKey.generate(), customer="who")
    victim = sorted(portal.stored_nodes())[0]
    support.register_node(portal, victim, SigningKey.generate(), customer="evil")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = portal.query("SELECT count(*) FROM inventory_enrolment WHERE state = 'pending'")
        if rows[0][0] == 2:
            return
        time.sleep(0.2)
    raise SystemExit("the enrolment page's nodes did not register")


def take(out_dir: Path) -> list[Path]:
    from playwright.sync_api import expect

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="switchboard-shots-") as tmp,
        support.stack_for_browser(Path(tmp)) as portal,
        support.chromium() as browser,
    ):
        _seed_jobs(portal)
        _seed_enrolment(portal)
        job_path = ""
        for scheme in ("light", "dark"):
            context = support.new_context(browser, portal.base_url, color_scheme=scheme)
            page = context.new_page()
            support.log_in(page, USER)

            # The job form, filled in for an action with several kinds of DDL input.
            page.goto("/jobs/new/")
            page.evaluate(
                "text => window.switchboardFilterBuilder.load(text)",
                "customer=acme and not environment=dev",
            )
            page.locator("#agent-action").select_option(label="echo echo")
            page.locator('[name="input:echo.echo:message"]').fill("hello from the NOC")
            expect(page.locator('fieldset[data-action="echo.echo"]')).to_be_visible()
            expect(page.locator("#filter-preview")).to_contain_text("matching")
            written.append(_shot(page, out_dir / f"job-form-{scheme}.png"))

            # The filter builder: a group of alternatives, a negated condition, and the
            # autocomplete offering a fact's values with their node counts.
            _builder_in_use(page)
            written.append(_shot(page, out_dir / f"filter-builder-{scheme}.png", keep_focus=True))

            # A finished job with its replies: run it once, from the form, then reopen it.
            if not job_path:
                page.locator("#filter").fill("customer=acme")
                page.locator("#agent-action").select_option(label="rpcutil ping")
                page.get_by_role("button", name="Run", exact=True).click()
                with page.expect_navigation(url=JOB_URL):
                    page.get_by_role("button", name=re.compile(r"^Run on ")).click()
                job_path = JOB_URL.search(page.url).group(0)  # type: ignore[union-attr]
            else:
                page.goto(job_path)
            expect(page.locator("#job-status")).to_have_text("completed", timeout=FINISH_TIMEOUT_MS)
            expect(page.locator("#stream-state")).to_have_text("finished")
            written.append(_shot(page, out_dir / f"job-detail-{scheme}.png"))

            page.locator("header nav").get_by_role("link", name="Jobs").click()
            expect(page.locator("table.grid tbody tr")).to_have_count(4)
            written.append(_shot(page, out_dir / f"job-list-{scheme}.png"))

            # The inventory: a filtered node list with chosen columns, then one node.
            page.goto("/inventory/?q=role%3Dweb&columns=datacenter,customer,os,environment")
            expect(page.locator("table.grid tbody tr").first).to_be_visible()
            written.append(_shot(page, out_dir / f"inventory-{scheme}.png"))
            page.locator("table.grid tbody tr a").first.click()
            expect(page.locator("h1")).to_be_visible()
            written.append(_shot(page, out_dir / f"node-{scheme}.png"))

            # Enrolment: nodes waiting for an admin, and a key conflict.
            page.locator("header nav").get_by_role("link", name="Enrolment").click()
            expect(page.locator("#pending tbody tr")).to_have_count(2)
            written.append(_shot(page, out_dir / f"enrolment-{scheme}.png"))

            # The admins' Users page: every account with its roles, source and last sign-in.
            page.goto("/access/users/")
            expect(page.locator("#users tbody tr").first).to_be_visible()
            written.append(_shot(page, out_dir / f"users-{scheme}.png"))
            context.close()
    return written


def _builder_in_use(page: Page) -> None:
    from playwright.sync_api import expect

    page.goto("/jobs/new/")
    page.evaluate(
        "text => window.switchboardFilterBuilder.load(text)",
        "customer=acme and (role=web or role=db) and not environment=dev",
    )
    page.get_by_role("button", name="Add a condition to the filter").click()
    fact = page.get_by_role("combobox", name="Condition 5 fact")
    fact.press_sequentially("datac", delay=20)
    page.locator('[role="option"][data-value="datacenter"]').click()
    expect(page.locator('[role="listbox"]:visible [role="option"]').first).to_be_visible()
    expect(page.locator("#filter-preview")).to_contain_text("matching")


def _shot(page: Page, path: Path, keep_focus: bool = False) -> Path:
    if not keep_focus:  # an open autocomplete list closes with the focus
        page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=path, animations="disabled", caret="hide")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    if not support.browser_available():
        print("Chromium or Playwright missing: run scripts/install-browser", file=sys.stderr)
        return 2
    for path in take(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
