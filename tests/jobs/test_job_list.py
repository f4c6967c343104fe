"""The jobs list (page and API): each filter, combinations, keyset paging while jobs are being
submitted, bad input as a 400 naming the parameter, and visibility through every filter."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.http import QueryDict
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal.jobs.listing import (
    PAGE_SIZE,
    JobListQuery,
    ListFilterError,
    keyset_page,
    matching_jobs,
)
from portal.jobs.models import Job

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<tr>\s*<td><a href="/jobs/(\d+)/">')


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """A cheap hasher: every test here makes four users, and the machine is shared."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_job(user: User, roles: list[Group], **fields: Any) -> Job:
    """A job as ``submit_job`` leaves it, without planning or queueing anything."""
    created_at = fields.pop("created_at", None)
    values: dict[str, Any] = {
        "source": "web",
        "agent": "rpcutil",
        "action": "ping",
        "collective": "mcollective",
        "timeout": 10,
        **fields,
    }
    job = Job.objects.create(created_by=user, **values)
    job.roles.set(roles)
    if created_at is not None:
        Job.objects.filter(pk=job.pk).update(created_at=created_at)
    return job


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


class World:
    """Who is who, and six jobs (named j1..j6, oldest first)."""

    def __init__(self, operator: User, outsider: User) -> None:
        self.noc = operator  # roles operator and ops
        self.ops = Group.objects.get(name="ops")
        self.operator_role = Group.objects.get(name="operator")
        self.mate = User.objects.create_user("mate")
        self.mate.groups.add(self.ops)
        self.outsider = outsider  # no role shared with anyone
        self.manager = User.objects.create_user("mgr")
        self.manager.groups.add(Group.objects.get_or_create(name="manager")[0])
        noc_roles = [self.operator_role, self.ops]
        self.jobs = {
            "j1": make_job(self.noc, noc_roles, status="completed",
                           reason="INC-1234 disk full", created_at=at(1, 10)),
            "j2": make_job(self.mate, [self.ops], agent="service", action="restart",
                           status="failed", reason="CHG-77 nginx reload", created_at=at(2, 12)),
            "j3": make_job(self.outsider, [], agent="service", action="restart", status="failed",
                           reason="INC-1234 outsider's ticket", created_at=at(2, 13)),
            "j4": make_job(self.noc, noc_roles, agent="service", action="status",
                           status="running", created_at=at(3, 9)),
            "j5": make_job(self.mate, [self.ops], agent="package", action="install",
                           status="queued", reason="follow-up of inc-1234",
                           created_at=at(4, 23, 30)),
            "j6": make_job(self.outsider, [], status="completed", reason="routine 100% check",
                           created_at=at(5, 8)),
        }  # fmt: skip
        self.names = {job.pk: name for name, job in self.jobs.items()}

    def api(self, user: User, params: dict[str, Any] | str = "") -> Any:
        client = APIClient()
        client.force_authenticate(user)
        if isinstance(params, str):
            return client.get("/api/jobs/" + params)
        return client.get("/api/jobs/", params)

    def listed(self, user: User, params: dict[str, Any]) -> list[str]:
        """The names of the jobs the API lists, and checks the page lists the same."""
        response = self.api(user, params)
        assert response.status_code == 200, response.content
        api_names = [self.names[job["id"]] for job in response.json()["results"]]
        page = login(user).get("/", params)
        assert page.status_code == 200
        page_names = [self.names[int(pk)] for pk in ROW.findall(page.content.decode())]
        assert page_names == api_names
        return api_names


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(operator: User, other_operator: User) -> World:
    return World(operator, other_operator)


# -- each filter and combinations -----------------------------------------------------------------

NOC_SEES = ["j5", "j4", "j2", "j1"]
EVERY_JOB = ["j6", "j5", "j4", "j3", "j2", "j1"]


@pytest.mark.parametrize(
    ("params", "noc_sees", "manager_sees"),
    [
        ({}, NOC_SEES, EVERY_JOB),
        ({"mine": "1"}, ["j4", "j1"], []),
        ({"mine": "0"}, NOC_SEES, EVERY_JOB),
        ({"role": "ops"}, ["j5", "j4", "j2", "j1"], None),
        ({"role": "operator"}, ["j4", "j1"], None),
        ({"role": "mine"}, NOC_SEES, []),
        ({"status": "failed"}, ["j2"], ["j3", "j2"]),
        ({"status": ["queued", "running"]}, ["j5", "j4"], ["j5", "j4"]),
        ({"agent": "service"}, ["j4", "j2"], ["j4", "j3", "j2"]),
        ({"action": "restart"}, ["j2"], ["j3", "j2"]),
        ({"agent": "service", "action": "status"}, ["j4"], ["j4"]),
        ({"requester": "mate"}, ["j5", "j2"], ["j5", "j2"]),
        ({"requester": "noc2"}, [], ["j6", "j3"]),
        ({"q": "inc-1234"}, ["j5", "j1"], ["j5", "j3", "j1"]),
        ({"q": "  NGINX "}, ["j2"], ["j2"]),
        ({"q": "100%"}, [], ["j6"]),
        ({"q": "_"}, [], []),  # LIKE's wildcards are searched for as text
        ({"since": "2026-03-03"}, ["j5", "j4"], ["j6", "j5", "j4"]),
        ({"until": "2026-03-02"}, ["j2", "j1"], ["j3", "j2", "j1"]),
        ({"since": "2026-03-02", "until": "2026-03-02"}, ["j2"], ["j3", "j2"]),
        ({"since": "2026-03-04", "until": "2026-03-04"}, ["j5"], ["j5"]),
        ({"since": "0001-01-01", "until": "9999-12-31"}, NOC_SEES, EVERY_JOB),
        ({"status": "failed", "agent": "service", "q": "INC"}, [], ["j3"]),
        ({"mine": "1", "agent": "service", "since": "2026-03-02"}, ["j4"], []),
        ({"role": "ops", "requester": "mate", "status": "queued"}, ["j5"], None),
        ({"requester": "noc", "until": "2026-03-01", "q": "disk"}, ["j1"], ["j1"]),
    ],
)
def test_each_filter_and_combinations_list_the_same_jobs_on_the_page_and_the_api(
    world: World, params: dict[str, Any], noc_sees: list[str], manager_sees: list[str] | None
) -> None:
    assert world.listed(world.noc, params) == noc_sees
    if manager_sees is not None:  # a role the manager does not have is a 400 (tested below)
        assert world.listed(world.manager, params) == manager_sees


def test_dates_are_days_in_the_servers_time_zone(world: World) -> None:
    # j5 was submitted at 23:30 UTC on 4 March: 5 March already in Paris (UTC+1).
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert world.listed(world.noc, {"since": "2026-03-05"}) == ["j5"]
        assert world.listed(world.noc, {"until": "2026-03-04"}) == ["j4", "j2", "j1"]
    assert world.listed(world.noc, {"since": "2026-03-05"}) == []


def test_the_page_shows_the_filters_in_force_and_a_clear_empty_state(world: World) -> None:
    page = login(world.noc).get("/", {"status": "expired", "agent": "service", "mine": "1"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "No jobs match these filters" in html
    assert "status expired" in html and "agent service" in html and "my jobs" in html
    # Each filter in force links to the same list without it.
    assert 'href="/?status=expired&amp;agent=service"' in html
    # The form shows the filters again.
    assert 'name="mine" value="1" checked' in html
    assert '<option value="service" selected>' in html
    assert '<option value="expired" selected>' in html


def test_the_page_shows_a_truncated_reason_and_the_role_choices(world: World) -> None:
    make_job(world.noc, [world.ops], reason="INC-9 " + "x" * 100)
    html = login(world.noc).get("/").content.decode()
    assert "<th>Reason</th>" in html
    assert "INC-9 " + "x" * 53 + "…" in html
    assert '<option value="mine">any of my roles</option>' in html
    assert '<option value="ops">ops</option>' in html
    assert '<option value="operator">operator</option>' in html


def test_without_filters_an_empty_list_invites_to_run_an_action(operator: User) -> None:
    html = login(operator).get("/").content.decode()
    assert "No jobs yet." in html and "No jobs match" not in html


# -- keyset paging --------------------------------------------------------------------------------


def test_api_pages_follow_next_with_no_duplicates_or_gaps_while_jobs_are_submitted(
    world: World,
) -> None:
    roles = [world.ops]
    for n in range(125):
        make_job(world.mate, roles, reason=f"batch {n}")
    expected = list(Job.objects.visible_to(world.noc).order_by("-id").values_list("pk", flat=True))
    assert len(expected) == 129
    seen: list[int] = []
    url: str | None = "http://testserver/api/jobs/?limit=50"
    pages = 0
    while url:
        response = world.api(world.noc, "?" + urlsplit(url).query)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [job["id"] for job in body["results"]]
        url = body["next"]
        pages += 1
        # Someone submits jobs between two page loads: they go above the first page.
        make_job(world.mate, roles, reason="submitted while paging")
        make_job(world.outsider, [], reason="not visible to noc")
    assert pages == 3
    assert seen == expected
    assert len(set(seen)) == len(seen)


def test_api_next_and_previous_keep_the_filters_and_the_limit(world: World) -> None:
    for _ in range(7):
        make_job(world.mate, [world.ops], agent="service", action="restart", status="failed")
    first = world.api(world.noc, {"status": "failed", "agent": "service", "limit": "3"}).json()
    assert first["previous"] is None
    next_url = urlsplit(first["next"])
    assert next_url.path == "/api/jobs/"
    assert "status=failed" in next_url.query and "agent=service" in next_url.query
    assert "limit=3" in next_url.query
    second = world.api(world.noc, "?" + next_url.query).json()
    third = world.api(world.noc, "?" + urlsplit(second["next"]).query).json()
    ids = [job["id"] for body in (first, second, third) for job in body["results"]]
    assert ids == list(
        matching_jobs(world.noc, JobListQuery(statuses=("failed",), agent="service"))
        .order_by("-id")
        .values_list("pk", flat=True)
    )
    assert len(ids) == 8 and third["next"] is None
    # previous of the third page is the second page again
    back = world.api(world.noc, "?" + urlsplit(third["previous"]).query).json()
    assert [job["id"] for job in back["results"]] == [job["id"] for job in second["results"]]


def test_api_answers_100_jobs_unless_asked_and_keeps_the_summary_shape(world: World) -> None:
    for _ in range(110):
        make_job(world.noc, [world.ops])
    body = world.api(world.noc).json()
    assert set(body) == {"results", "next", "previous"}
    assert len(body["results"]) == 100 and body["next"] is not None
    summary = body["results"][0]
    assert {"id", "agent", "action", "status", "requester", "reason", "counts"} <= set(summary)
    assert len(world.api(world.noc, {"limit": "200"}).json()["results"]) == 114


def test_page_older_and_newer_links_walk_the_list_without_duplicates_or_gaps(
    world: World,
) -> None:
    for n in range(2 * PAGE_SIZE + 10):
        make_job(world.noc, [world.ops], reason=f"INC-{n}")
    expected = list(Job.objects.visible_to(world.noc).order_by("-id").values_list("pk", flat=True))
    client = login(world.noc)
    seen, pages, url = [], [], "/"
    while url:
        html = client.get(url).content.decode()
        ids = [int(pk) for pk in ROW.findall(html)]
        pages.append((url, ids))
        seen += ids
        older = re.search(r'href="([^"]+)" rel="next"', html)
        url = older.group(1).replace("&amp;", "&") if older else ""
        make_job(world.noc, [world.ops], reason="submitted while paging")
    assert seen == expected and len(set(seen)) == len(seen)
    assert [len(ids) for _, ids in pages] == [50, 50, 14]
    # "Newer" from the last page shows the page before it, exactly.
    html = client.get(pages[-1][0]).content.decode()
    newer = re.search(r'href="([^"]+)" rel="prev"', html).group(1).replace("&amp;", "&")
    assert [int(pk) for pk in ROW.findall(client.get(newer).content.decode())] == pages[1][1]


def test_newer_walks_back_exactly_and_reaching_the_top_shows_the_newest_page(
    world: World,
) -> None:
    for _ in range(PAGE_SIZE + 5):
        make_job(world.noc, [world.ops])

    def page(query: JobListQuery) -> Any:
        return keyset_page(matching_jobs(world.noc, query), query)

    first = [job.pk for job in page(JobListQuery()).jobs]
    second = page(JobListQuery(after=first[-1]))
    late = make_job(world.noc, [world.ops])
    back = page(JobListQuery(before=second.newer))
    assert [job.pk for job in back.jobs] == first
    assert (back.newer, back.older) == (first[0], first[-1])
    # One newer job above it: too few for a page, so the newest page is shown again.
    top = page(JobListQuery(before=back.newer))
    assert [job.pk for job in top.jobs] == [late.pk, *first[:-1]]
    assert top.newer is None and top.older == first[-2]


def test_a_page_is_one_query_of_limit_plus_one_rows_and_never_a_count(world: World) -> None:
    for _ in range(3 * PAGE_SIZE):
        make_job(world.noc, [world.ops])
    deep = Job.objects.order_by("-id").values_list("pk", flat=True)[2 * PAGE_SIZE]
    for user in (world.noc, world.manager):
        client = login(user)
        client.get("/")  # the session, the roles: warm
        for params in ({}, {"after": str(deep)}, {"status": "queued", "q": "x", "role": ""}):
            with CaptureQueriesContext(connection) as queries:
                assert client.get("/", params).status_code == 200
            sqls = [q["sql"] for q in queries.captured_queries]
            assert not any("COUNT(" in sql.upper() for sql in sqls), sqls
            listing = [sql for sql in sqls if 'FROM "jobs_job"' in sql and "LIMIT 51" in sql]
            assert len(listing) == 1, sqls
            assert len(sqls) <= 8, sqls


# -- bad input ------------------------------------------------------------------------------------

BAD = [
    ({"status": "done"}, "status"),
    ({"status": ["failed", "bogus"]}, "status"),
    ({"agent": "ghost"}, "agent"),
    ({"action": "ghost"}, "action"),
    ({"agent": "rpcutil", "action": "restart"}, "action"),
    ({"requester": "nobody"}, "requester"),
    ({"role": "dba"}, "role"),
    ({"mine": "maybe"}, "mine"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-02-30"}, "since"),
    ({"until": "2026-3-1"}, "until"),
    ({"since": "2026-03-05", "until": "2026-03-01"}, "until"),
    ({"after": "abc"}, "after"),
    ({"after": "-1"}, "after"),
    ({"after": "9" * 30}, "after"),
    ({"before": "1.5"}, "before"),
    ({"after": "5", "before": "9"}, "before"),
    ({"q": "x" * 201}, "q"),
    ({"q": "nul\x00byte"}, "q"),
    ({"requester": "a\x01"}, "requester"),
]


@pytest.mark.parametrize(("params", "field"), BAD)
def test_bad_input_is_a_400_naming_the_parameter_on_the_page_and_the_api(
    world: World, params: dict[str, Any], field: str
) -> None:
    response = world.api(world.noc, params)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    page = login(world.noc).get("/", params)
    assert page.status_code == 400
    html = page.content.decode()
    assert f"<code>{field}</code>:" in html
    assert f'id="e-{field}"' in html or field in ("after", "before")
    assert not ROW.findall(html)


@pytest.mark.parametrize("limit", ["0", "201", "ten", "-5", "1e3"])
def test_api_limit_is_from_1_to_200_and_the_page_ignores_it(world: World, limit: str) -> None:
    response = world.api(world.noc, {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["errors"]
    assert login(world.noc).get("/", {"limit": limit}).status_code == 200


def test_every_bad_parameter_is_named_at_once(world: World) -> None:
    with pytest.raises(ListFilterError) as caught:
        JobListQuery.from_params(
            {"status": "x", "agent": "ghost", "since": "y", "after": "z"}, world.noc
        )
    assert set(caught.value.errors) == {"status", "agent", "since", "after"}


def test_the_form_keeps_what_was_typed_when_refused(world: World) -> None:
    html = login(world.noc).get("/", {"requester": "nobody", "q": "INC-1"}).content.decode()
    assert 'value="nobody"' in html and 'value="INC-1"' in html
    assert "no user is named &#x27;nobody&#x27;" in html


# -- visibility -----------------------------------------------------------------------------------

THROUGH_ANY_FILTER = [
    {},
    {"requester": "noc2"},
    {"q": "outsider"},
    {"q": "INC-1234"},
    {"agent": "service", "action": "restart"},
    {"status": "failed"},
    {"status": ["completed", "failed"]},
    {"role": "mine"},
    {"role": "ops"},
    {"since": "2026-03-02", "until": "2026-03-05"},
    {"after": "999999"},
    {"before": "0"},
    {"requester": "noc2", "q": "routine", "status": "completed", "agent": "rpcutil"},
]


@pytest.mark.parametrize("params", THROUGH_ANY_FILTER)
def test_an_operator_never_sees_anothers_job_through_any_filter(
    world: World, params: dict[str, Any]
) -> None:
    hidden = {world.jobs["j3"].pk, world.jobs["j6"].pk}
    response = world.api(world.noc, params)
    assert response.status_code == 200
    assert not hidden & {job["id"] for job in response.json()["results"]}
    html = login(world.noc).get("/", params).content.decode()
    assert not hidden & {int(pk) for pk in ROW.findall(html)}


@pytest.mark.parametrize("params", THROUGH_ANY_FILTER[:11])
def test_an_outsider_sees_only_their_own_jobs_and_a_manager_sees_every_one(
    world: World, params: dict[str, Any]
) -> None:
    everyone = set(world.jobs.values())
    for user, visible in (
        (world.outsider, {"j3", "j6"}),
        (world.manager, set(world.names.values())),
    ):
        if params.get("role") == "ops":
            continue  # not their role: a 400 (tested above)
        response = world.api(user, params)
        assert response.status_code == 200, response.content
        names = {world.names[job["id"]] for job in response.json()["results"]}
        assert names <= visible
    # The manager, unfiltered, reads every job.
    assert {world.names[j["id"]] for j in world.api(world.manager).json()["results"]} == {
        world.names[job.pk] for job in everyone
    }


def test_anonymous_visitors_are_sent_to_log_in_and_the_api_refuses_them(world: World) -> None:
    response = Client().get("/", {"status": "failed"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert APIClient().get("/api/jobs/").status_code in (401, 403)


def test_the_filters_round_trip_through_their_query_string(world: World) -> None:
    params = {
        "mine": "1", "role": "ops", "status": ["failed", "queued"], "agent": "service",
        "action": "restart", "requester": "mate", "q": "INC 1234 & more", "since": "2026-03-01",
        "until": "2026-03-09",
    }  # fmt: skip
    query = JobListQuery.from_params(params, world.noc)
    again = JobListQuery.from_params(QueryDict(query.query_string()[1:]), world.noc)
    assert again == query
