"""The manager pages: who may open them, the timeline's filters and paging, drill-downs, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.inventory.models import Node
from portal.jobs.models import Job, NodeReply
from tests.audit.conftest import clock, tamper

pytestmark = pytest.mark.django_db

PAGES = ["/audit/", "/audit/charts/", "/audit/jobs/1/", "/audit/nodes/web01/", "/audit/export.csv"]


def event_ids(response) -> list[int]:
    """The event ids on a timeline page, in the order shown."""
    html = response.content.decode()
    return [int(part.split('"', 1)[0]) for part in html.split('data-event="')[1:]]


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_login(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("url", PAGES)
def test_operators_may_not_read_the_audit_history(operator, url: str) -> None:
    client = Client()
    client.force_login(operator)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("who", ["manager", "superuser"])
def test_managers_and_superusers_may(request, who: str, make_event) -> None:
    make_event(job_id=1, nodes=["web01"])
    client = Client()
    client.force_login(request.getfixturevalue(who))
    for url in PAGES:
        assert client.get(url).status_code == 200, url


def test_the_navigation_links_the_audit_for_managers_only(manager_client, operator) -> None:
    assert 'href="/audit/">Audit</a>' in manager_client.get("/audit/").content.decode()
    client = Client()
    client.force_login(operator)
    assert 'href="/audit/"' not in client.get("/inventory/").content.decode()


def test_the_timeline_shows_events_newest_first(manager_client, make_event) -> None:
    first = make_event(agent="service", action="restart", summary="service restart", job_id=9)
    response = manager_client.get("/audit/")
    assert response.status_code == 200
    ids = event_ids(response)
    assert first.pk in ids
    assert ids == sorted(ids, reverse=True)
    html = response.content.decode()
    assert "<code>service.restart</code>" in html and 'href="/audit/jobs/9/"' in html


def test_keyset_paging_walks_older_and_back(manager_client, make_event) -> None:
    events = [make_event(job_id=i) for i in range(120)]
    page1 = manager_client.get("/audit/?kind=job.submitted")
    assert event_ids(page1) == [e.pk for e in events[::-1][:50]]
    assert 'rel="prev"' not in page1.content.decode()
    page2 = manager_client.get(f"/audit/?kind=job.submitted&before={events[70].pk}")
    assert event_ids(page2) == [e.pk for e in events[::-1][50:100]]
    page3 = manager_client.get(f"/audit/?kind=job.submitted&before={events[20].pk}")
    assert event_ids(page3) == [e.pk for e in events[::-1][100:]]
    assert 'rel="next"' not in page3.content.decode()
    back = manager_client.get(f"/audit/?kind=job.submitted&after={events[19].pk}")
    assert event_ids(back) == [e.pk for e in events[::-1][50:100]]


@pytest.fixture
def varied(make_event, operator, manager) -> dict[str, AuditEvent]:
    """A few events that each filter tells apart."""
    return {
        "restart": make_event(
            actor=operator,
            agent="service",
            action="restart",
            job_id=1,
            summary="service restart on role=web",
            data={"inputs": {"service": "nginx"}, "reason": "CHG-4711"},
            nodes=["web01.example", "web02.example"],
        ),
        "install": make_event(
            actor=operator,
            agent="package",
            action="install",
            job_id=2,
            outcome="failed",
            kind="job.finished",
            data={"inputs": {"package": "50%_off"}},
            nodes=["db01.example"],
        ),
        "approve": make_event(
            actor=manager, kind="approval.approved", job_id=2, outcome="approved"
        ),
        "login": make_event(
            actor="mallory",
            kind="login.failed",
            roles=[],
            outcome="failed",
            summary="failed login as 'mallory'",
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("operator=noc", {"restart", "install"}),
        ("operator=mgr", {"approve"}),
        ("role=manager", {"approve"}),
        ("role=operator", {"restart", "install"}),
        ("agent=service", {"restart"}),
        ("agent=package&action=install", {"install"}),
        ("action=restart", {"restart"}),
        ("node=web02.example", {"restart"}),
        ("node=web0", set()),  # exact identities, not substrings
        ("outcome=failed", {"install", "login"}),
        ("kind=approval.approved", {"approve"}),
        ("kind=approval.*", {"approve"}),
        ("kind=job.*", {"restart", "install"}),
        ("job=2", {"install", "approve"}),
        ("q=NGINX", {"restart"}),
        ("q=chg-4711", {"restart"}),
        ("q=50%25_off", {"install"}),
        ("q=%25", {"install"}),
        ("q=0%25", {"install"}),
        ("q=_", {"install"}),
        ("q=mallory", {"login"}),
        ("operator=noc&outcome=failed", {"install"}),
    ],
)
def test_each_filter(manager_client, varied, query: str, expected: set[str]) -> None:
    response = manager_client.get(f"/audit/?{query}")
    assert response.status_code == 200
    names = {name for name, event in varied.items() if event.pk in event_ids(response)}
    assert names == expected


def test_the_date_range_selects_whole_days(manager, make_event) -> None:
    days = [datetime(2025, 5, d, 12, tzinfo=UTC) for d in (1, 2, 3)]
    made = []
    for day in days:
        with clock(day):
            made.append(make_event(summary=f"on {day:%d}"))
    # Logged in after: an event's time is never earlier than the one before it.
    manager_client = Client()
    manager_client.force_login(manager)
    ids = event_ids(manager_client.get("/audit/?from=2025-05-02&to=2025-05-02"))
    assert ids == [made[1].pk]
    ids = event_ids(manager_client.get("/audit/?from=2025-05-02T13:00&kind=job.submitted"))
    assert ids == [made[2].pk]
    ids = event_ids(manager_client.get("/audit/?to=2025-05-01"))
    assert ids == [made[0].pk]
    ids = event_ids(manager_client.get("/audit/?from=0001-01-01&to=9999-12-31&kind=job.submitted"))
    assert ids == [e.pk for e in made[::-1]]
    assert event_ids(manager_client.get("/audit/?from=2030-01-01")) == []


def test_the_job_drill_down_shows_its_events_and_every_reply(manager_client, operator, make_event):
    job = Job.objects.create(
        created_by=operator,
        source="web",
        agent="service",
        action="restart",
        collective="mcollective",
        timeout=10,
        status="completed",
        no_response=["web03.example"],
    )
    now = timezone.now()
    for identity, code in [("web01.example", 0), ("web02.example", 1)]:
        NodeReply.objects.create(
            job=job, identity=identity, statuscode=code, statusmsg="boom" * code, received_at=now
        )
    submitted = make_event(job_id=job.pk, agent="service", action="restart")
    make_event(job_id=job.pk + 1)
    page = manager_client.get(f"/audit/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/"' in page
    assert f'data-event="{submitted.pk}"' in page and page.count("data-event=") == 1
    assert "web01.example" in page and "web02.example" in page and "boom" in page
    assert 'id="job-no-response"' in page and "web03.example" in page


def test_a_deleted_jobs_events_remain(manager_client, make_event) -> None:
    make_event(job_id=777)
    page = manager_client.get("/audit/jobs/777/").content.decode()
    assert 'id="job-gone"' in page
    assert manager_client.get("/audit/jobs/778/").status_code == 404


def test_a_nodes_history_with_its_replies(manager_client, operator, make_event) -> None:
    job = Job.objects.create(
        created_by=operator, source="web", agent="service", action="status",
        collective="mcollective", timeout=10,
    )  # fmt: skip
    NodeReply.objects.create(
        job=job, identity="web01.example", statuscode=4, statusmsg="unit not found",
        received_at=timezone.now(),
    )  # fmt: skip
    Node.objects.create(
        identity="web01.example", first_seen=timezone.now(), last_seen=timezone.now(),
        registered_at=timezone.now(),
    )  # fmt: skip
    mine = make_event(kind="job.finished", job_id=job.pk, nodes=["web01.example", "web02"])
    make_event(kind="job.finished", job_id=job.pk + 1, nodes=["web02"])
    response = manager_client.get("/audit/nodes/web01.example/")
    assert event_ids(response) == [mine.pk]
    page = response.content.decode()
    assert "unit not found" in page and 'href="/inventory/web01.example/"' in page


def test_an_event_page_rechecks_its_hash(manager_client, make_event) -> None:
    event = make_event(data={"inputs": {"service": "nginx"}}, nodes=["a", "b"])
    page = manager_client.get(f"/audit/events/{event.pk}/").content.decode()
    assert 'id="hash-check">matches' in page and "&quot;nginx&quot;" in page
    tamper("UPDATE audit_auditevent SET summary = 'x' WHERE id = %s", [event.pk])
    page = manager_client.get(f"/audit/events/{event.pk}/").content.decode()
    assert "does not match the content" in page


def test_charts_draw_actions_per_day_and_the_failure_rate(manager, make_event) -> None:
    today = timezone.now().replace(hour=10, minute=0)
    with clock(today - timedelta(days=2)):
        make_event(agent="service")
        make_event(agent="package")
        make_event(kind="job.finished", outcome="completed",
                   data={"counts": {"expected": 4, "failed": 1, "no_response": 0}})  # fmt: skip
    with clock(today):
        make_event(agent="service")
        junk = {"expected": 10, "failed": 0, "no_response": "junk"}
        make_event(kind="job.finished", outcome="completed", data={"counts": junk})
        make_event(kind="job.finished", outcome="rejected", data={"counts": {"expected": 3}})
    manager_client = Client()
    manager_client.force_login(manager)
    response = manager_client.get("/audit/charts/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<rect class="series-') == 3
    assert 'service <span class="muted">2</span>' in page
    assert "(3 jobs submitted)" in page
    assert '<polyline class="rate-line series-0"' in page
    # Two days with finished jobs: 1 of 1 had a failure, then 0 of 1 (rejected left out).
    assert '<td class="num">100.0</td><td class="num">25.0</td>' in page
    assert '<td class="num">0.0</td><td class="num">0.0</td>' in page


def test_charts_refuse_more_than_a_year(manager_client) -> None:
    response = manager_client.get("/audit/charts/?from=2020-01-01&to=2024-01-01")
    assert response.status_code == 400
    assert "charts cover at most 366 days; this range has 1462" in response.content.decode()


def test_the_timeline_is_a_bounded_number_of_queries(
    manager_client, make_event, django_assert_max_num_queries
) -> None:
    for _ in range(60):
        make_event(nodes=["a"], roles=["operator"])
    with django_assert_max_num_queries(9):
        assert manager_client.get("/audit/?role=operator&node=a&q=x").status_code == 200
