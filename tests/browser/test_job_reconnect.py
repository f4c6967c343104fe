"""Fault: the ASGI server restarts under an open job page (issue 8, item 4).

A job runs in small batches with pauses, so its replies keep arriving for a while. The page is
open on it; the ASGI server is killed mid-stream (replies go on being stored while it is down)
and started again on the same port. The page must reconnect by itself, resume from the last
reply it holds (``?after=<seq>``), and end with exactly one row per node and the right counts.
Every WebSocket message the page received is recorded, so a reply the server sent twice (or
never) shows even though the page itself would hide a double.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

from harness.portal import PortalStack
from harness.replies import replies_from_messages
from portal.core import stack
from tests.browser import support

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, WebSocket

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.timeout(600),
]

# admin reaches every node (the demo's noc only customer=acme): one row per simulated node.
USER = "admin"
# 30 nodes in batches of 3, 2 s apart: about 20 s of replies arriving.
BATCH = {"batch_size": 3, "batch_sleep": 2}
FINISH_TIMEOUT_MS = 120_000


class Sockets:
    """Every WebSocket the page opened, with the messages each received, in order."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, list[dict[str, Any]]]] = []

    def watch(self, socket: WebSocket) -> None:
        received: list[dict[str, Any]] = []
        self.opened.append((socket.url, received))
        socket.on("framereceived", lambda payload: received.append(json.loads(payload)))


@pytest.fixture
def admin_page(browser: Browser, portal: PortalStack, tmp_path: Path) -> Iterator[Page]:
    context = support.new_context(browser, portal.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.script_errors = errors  # type: ignore[attr-defined]
    try:
        support.log_in(page, USER)
        yield page
    except BaseException:
        page.screenshot(path=tmp_path / "failure.png", full_page=True)
        raise
    finally:
        context.close()


def _page_state(page: Page) -> dict[str, Any]:
    return page.evaluate("() => window.switchboardJobPage.state()")


def _job_finished(portal: PortalStack, job_id: int) -> bool:
    rows = portal.query("SELECT finished_at FROM jobs_job WHERE id = %s", job_id)
    return rows[0][0] is not None


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.mark.parametrize("back", ["mid-job", "after-the-end"])
def test_the_job_page_resumes_its_stream_after_an_asgi_server_restart(
    admin_page: Page, portal: PortalStack, back: str
) -> None:
    """``mid-job``: the server is back while replies still arrive (snapshot, then live frames);
    ``after-the-end``: the job finished while the server was down (the snapshot ends it)."""
    page = admin_page
    nodes = set(portal.stored_nodes())
    assert len(nodes) == support.NODE_COUNT
    token = portal.manage("issue_token", USER).strip()
    response = requests.post(
        portal.base_url + "/api/jobs/",
        json={"agent": "rpcutil", "action": "ping", "options": BATCH},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    sockets = Sockets()
    page.on("websocket", sockets.watch)
    page.goto(f"/jobs/{job_id}/")
    expect(page.locator("#stream-state")).to_have_text("live")
    # Some replies are on the page, most are still to come.
    _wait(lambda: _page_state(page)["rows"] >= 3, 60, "the first batch on the page")
    held = _page_state(page)["rows"]
    assert held < support.NODE_COUNT, "the job finished before the server could be killed"

    port = urlsplit(portal.base_url).port
    assert port is not None
    portal.supervisor.kill("asgi")
    expect(page.locator("#stream-state")).to_have_text("disconnected; reconnecting…")
    # Replies go on being stored while nobody can stream them: the page must fetch them.
    _wait(
        lambda: len(portal.stored_replies(job_id)) > held,
        60,
        "replies stored while the ASGI server was down",
    )
    if back == "after-the-end":
        _wait(lambda: _job_finished(portal, job_id), 90, "the end of the job")
    stored_while_down = len(portal.stored_replies(job_id))
    assert _page_state(page)["rows"] == held
    stack.start_asgi(portal.supervisor, "127.0.0.1", port, env=portal.env)

    expect(page.locator("#stream-state")).to_have_text("finished", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_have_text("completed")
    for name, value in {
        "expected": support.NODE_COUNT,
        "replied": support.NODE_COUNT,
        "ok": support.NODE_COUNT,
        "failed": 0,
        "no_response": 0,
    }.items():
        expect(page.locator(f"#count-{name}")).to_have_text(str(value))
    expect(page.locator("#rows-shown")).to_have_text(f"{support.NODE_COUNT} rows")
    # Thirty rows fit the drawn window: every one is in the DOM, once, sorted.
    drawn = page.locator("#replies tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.identity, r.dataset.outcome])"
    )
    assert [identity for identity, _ in drawn] == sorted(nodes)
    assert {outcome for _, outcome in drawn} == {"ok"}
    assert portal.stored_replies(job_id) == nodes

    # What the server sent: one socket before the restart, then one resuming after the
    # highest reply id the page had; every reply exactly once over both.
    assert len(sockets.opened) >= 2, [url for url, _ in sockets.opened]
    first_url, first = sockets.opened[0]
    assert "?" not in first_url
    held_seq = max(reply["id"] for _, reply in replies_from_messages(first))
    resumed = [(url, messages) for url, messages in sockets.opened[1:] if messages]
    assert len(resumed) == 1, [url for url, _ in sockets.opened]
    resumed_url, resumed_messages = resumed[0]
    assert resumed_url.endswith(f"?after={held_seq}"), resumed_url
    sent = Counter(
        reply["identity"]
        for _, messages in sockets.opened
        for _, reply in replies_from_messages(messages)
    )
    assert set(sent) == nodes
    assert [identity for identity, times in sent.items() if times > 1] == []
    # The replies stored while the server was down came in the resumed snapshot.
    snapshot = resumed_messages[0]
    assert snapshot["type"] == "job.snapshot"
    if back == "mid-job":
        assert not snapshot["job"]["finished"], "the job ended before the server was back"
        assert any(m["type"] == "job.frame" and m["replies"] for m in resumed_messages)
    else:
        assert snapshot["job"]["finished"]
        assert len(snapshot["job"]["replies"]) == support.NODE_COUNT - held
    assert len(snapshot["job"]["replies"]) >= stored_while_down - held
    print(
        f"\n{back}: rows on the page at the kill: {held}; stored while down: {stored_while_down}; "
        f"sockets opened: {len(sockets.opened)}; resumed with {len(snapshot['job']['replies'])}"
    )
    assert page.script_errors == []  # type: ignore[attr-defined]
