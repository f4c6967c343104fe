"""The jobs list: its filters read from a query string and checked, and keyset pages of the
jobs a person may see, newest first.

The page (``views.job_list``) and the API (``api.JobListAPI``) both read here, so they list
the same jobs for the same query. Every read starts from ``Job.objects.visible_to(user)``:
a filter only narrows what the policy lets the person see. Bad input is a
``ListFilterError`` naming each field at fault (the page and the API answer 400); nothing
unchecked reaches SQL.

Paging is by keyset on the id (jobs are numbered in the order they were submitted): one query
of ``limit + 1`` rows per page and no COUNT, so a page deep in 100,000 jobs costs what the
first one does, and jobs submitted between two page loads neither repeat nor push rows off
the next page. ``after=<id>`` is the page of older jobs below that id, ``before=<id>`` the
page of newer ones above it. The indexes each filter needs to stay fast at 100,000 jobs are in
``Job.Meta.indexes`` and ``migrations/0005_job_list_indexes.py`` (``bench/job_list.py``
measures them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.jobs.catalog import available_agents
from portal.jobs.models import Job
from portal.jobs.querysets import JobQuerySet
from portal.rbac.policy import User, roles_of

PAGE_SIZE = 50
# The API's page when it asks for no ``limit``: the 100 jobs it answered before it paged.
API_PAGE_SIZE = 100
MAX_LIMIT = 200
MAX_TEXT = 200
MAX_ID = 2**63 - 1
# ``role=mine``: jobs sent with any of the person's roles.
MY_ROLES = "mine"
STATUSES = tuple(Job.Status.values)
FILTER_FIELDS = ("mine", "role", "status", "agent", "action", "requester", "q", "since", "until")
# What a row of the page shows: the page never loads the node lists (discovered, targeted,
# not sent), inputs or filters, which can be large.
PAGE_COLUMNS = (
    "id", "agent", "action", "filter_text", "reason", "status", "discovered_count", "ok_count",
    "failed_count", "no_response", "created_at", "created_by__username",
)  # fmt: skip

_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"", "0", "false", "off", "no"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
# Control characters never appear in a reason, and NUL cannot be sent to PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ListFilterError(ValueError):
    """Query values the jobs list cannot use; ``errors`` maps each parameter to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class JobListQuery:
    """What a person asked the jobs list for: filters (empty ones filter nothing), a cursor
    and a page size. Build it with ``from_params``, which checks every value."""

    mine: bool = False
    role: str = ""
    statuses: tuple[str, ...] = ()
    agent: str = ""
    action: str = ""
    requester: str = ""
    q: str = ""
    since: date | None = None
    until: date | None = None
    after: int | None = None
    before: int | None = None
    limit: int = PAGE_SIZE
    # The requester's user id, looked up once while checking the name.
    requester_id: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        user: User,
        *,
        default_limit: int = PAGE_SIZE,
        limit_allowed: bool = False,
    ) -> JobListQuery:
        """Read and check ``params`` (a ``QueryDict`` or a plain mapping) for ``user``.

        ``limit`` is read only when ``limit_allowed`` (the API); the page always shows
        ``default_limit`` jobs. Raises ``ListFilterError`` naming every bad parameter.
        """
        reader = _Reader(params)
        mine = reader.flag("mine")
        role = reader.role(user)
        statuses = reader.statuses()
        agent, action = reader.agent_action()
        requester, requester_id = reader.requester()
        q = reader.text("q")
        since = reader.day("since")
        until = reader.day("until")
        if since and until and until < since and "until" not in reader.errors:
            reader.errors["until"] = f"{until} is before since ({since}); nothing can match"
        after = reader.cursor("after")
        before = reader.cursor("before")
        if after is not None and before is not None:
            reader.errors["before"] = "give after (older jobs) or before (newer), not both"
        limit = reader.limit(default_limit) if limit_allowed else default_limit
        if reader.errors:
            raise ListFilterError(reader.errors)
        return cls(
            mine=mine, role=role, statuses=statuses, agent=agent, action=action,
            requester=requester, q=q, since=since, until=until, after=after, before=before,
            limit=limit, requester_id=requester_id,
        )  # fmt: skip

    def apply(self, jobs: JobQuerySet, user: User) -> JobQuerySet:
        """``jobs`` narrowed by every filter given (not paged, nothing read yet)."""
        if self.mine:
            jobs = jobs.filter(created_by=user.pk)
        if self.role:
            names = roles_of(user) if self.role == MY_ROLES else [self.role]
            sent_with = Job.roles.through.objects.filter(group__name__in=names)
            jobs = jobs.filter(pk__in=sent_with.values("job_id"))
        if self.statuses:
            jobs = jobs.filter(status__in=self.statuses)
        if self.agent:
            jobs = jobs.filter(agent=self.agent)
        if self.action:
            jobs = jobs.filter(action=self.action)
        if self.requester:
            jobs = jobs.filter(created_by=self.requester_id)
        if self.q:
            jobs = jobs.filter(reason__icontains=self.q)
        if self.since is not None and (start := _midnight(self.since)) is not None:
            jobs = jobs.filter(created_at__gte=start)
        if self.until is not None and (end := _midnight(self.until, days=1)) is not None:
            jobs = jobs.filter(created_at__lt=end)
        return jobs

    def filter_params(self) -> list[tuple[str, str]]:
        """The filters as query-string pairs (only those set; ``status`` may repeat)."""
        pairs: list[tuple[str, str]] = []
        if self.mine:
            pairs.append(("mine", "1"))
        if self.role:
            pairs.append(("role", self.role))
        pairs.extend(("status", status) for status in self.statuses)
        for name in ("agent", "action", "requester", "q"):
            if value := getattr(self, name):
                pairs.append((name, value))
        if self.since is not None:
            pairs.append(("since", self.since.isoformat()))
        if self.until is not None:
            pairs.append(("until", self.until.isoformat()))
        return pairs

    def query_string(self, *, with_limit: bool = False, **cursor: int | None) -> str:
        """``?`` and the filters, with ``after`` or ``before`` (and ``limit``) when given."""
        pairs = self.filter_params()
        pairs.extend((name, str(value)) for name, value in cursor.items() if value is not None)
        if with_limit:
            pairs.append(("limit", str(self.limit)))
        return "?" + urlencode(pairs) if pairs else "?"

    @property
    def is_filtered(self) -> bool:
        return bool(self.filter_params())

    def described(self) -> list[tuple[str, str]]:
        """Each filter in force as (what it says, the query string without it), for the page."""
        said: list[tuple[str, str]] = []
        if self.mine:
            said.append(("mine", "my jobs"))
        if self.role:
            said.append(
                ("role", "any of my roles" if self.role == MY_ROLES else f"role {self.role}")
            )
        if self.statuses:
            said.append(("status", "status " + " or ".join(self.statuses)))
        for name, label in (("agent", "agent"), ("action", "action"), ("requester", "by")):
            if value := getattr(self, name):
                said.append((name, f"{label} {value}"))
        if self.q:
            said.append(("q", f"reason contains \u201c{self.q}\u201d"))
        if self.since is not None:
            said.append(("since", f"since {self.since}"))
        if self.until is not None:
            said.append(("until", f"until {self.until} (inclusive)"))
        return [(text, self.without(name).query_string()) for name, text in said]

    def without(self, name: str) -> JobListQuery:
        """The same filters less one (for the "remove this filter" links); no cursor."""
        emptied: dict[str, Any] = {
            "mine": False, "role": "", "status": (), "agent": "", "action": "",
            "requester": "", "q": "", "since": None, "until": None,
        }  # fmt: skip
        attribute = "statuses" if name == "status" else name
        return replace(self, **{attribute: emptied[name]}, after=None, before=None)


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first, and the cursors to the pages on either side."""

    jobs: list[Job]
    # ``before=`` for the newer page and ``after=`` for the older one; None: no such page.
    newer: int | None
    older: int | None


def matching_jobs(user: User, query: JobListQuery) -> JobQuerySet:
    """The jobs ``user`` may see that match ``query``'s filters: every list reads these."""
    return query.apply(Job.objects.visible_to(user), user)


def keyset_page(jobs: JobQuerySet, query: JobListQuery) -> JobPage:
    """The page of ``jobs`` at ``query``'s cursor: ``limit + 1`` rows in one query.

    The extra row tells whether an older page exists. A ``before`` page that reaches the
    newest job is the first page again (full, and with no newer link).
    """
    size = query.limit
    if query.before is not None:
        rows = list(jobs.filter(id__gt=query.before).order_by("id")[: size + 1])
        if len(rows) > size:
            shown = rows[:size][::-1]
            return JobPage(shown, newer=shown[0].pk, older=shown[-1].pk)
        query = replace(query, before=None)
    if query.after is not None:
        jobs = jobs.filter(id__lt=query.after)
    rows = list(jobs.order_by("-id")[: size + 1])
    shown = rows[:size]
    newer = None
    if query.after is not None:
        # Jobs at or above the cursor were on an earlier page (or were, for a stale cursor).
        newer = shown[0].pk if shown else query.after - 1
    older = shown[-1].pk if len(rows) > size else None
    return JobPage(shown, newer=newer, older=older)


def form_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The filters as the person typed them, to show the form again (even when refused)."""
    reader = _Reader(params)
    values: dict[str, Any] = {name: reader.raw(name) for name in FILTER_FIELDS}
    values["mine"] = values["mine"].lower() in _TRUE
    values["status"] = [value for value in reader.values("status") if value]
    return values


def role_choices(user: User) -> list[str]:
    """The roles the list offers to filter by: the person's own."""
    return roles_of(user)


def action_choices() -> list[str]:
    """Every action name in the DDL catalogue, once each, sorted."""
    return sorted({name for ddl in available_agents().values() for name in ddl.actions})


def _midnight(day: date, days: int = 0) -> datetime | None:
    """Midnight at the start of ``day`` (plus ``days``) in the server's time zone, or None
    where that falls outside what a datetime holds (before year 1, after 9999): no bound."""
    try:
        moment = timezone.make_aware(datetime.combine(day + timedelta(days=days), time.min))
        moment.astimezone(UTC)  # as the database is sent it
    except OverflowError:
        return None
    return moment


class _Reader:
    """Reads one parameter at a time, collecting what is wrong with each instead of stopping."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.errors: dict[str, str] = {}

    def values(self, name: str) -> list[str]:
        getlist = getattr(self.params, "getlist", None)
        if getlist is not None:
            raw: Iterable[Any] = getlist(name)
        else:
            value = self.params.get(name)
            raw = [] if value is None else value if isinstance(value, list | tuple) else [value]
        return [str(value) for value in raw]

    def raw(self, name: str) -> str:
        values = self.values(name)
        return values[-1].strip() if values else ""

    def text(self, name: str, max_length: int = MAX_TEXT) -> str:
        value = self.raw(name)
        if len(value) > max_length:
            self.errors[name] = f"at most {max_length} characters (got {len(value)})"
            return ""
        if _CONTROL.search(value):
            self.errors[name] = "control characters cannot be searched for"
            return ""
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in _TRUE:
            return True
        if value not in _FALSE and name not in self.errors:
            self.errors[name] = f"{value[:20]!r} is not a yes or no; use 1 or leave it out"
        return False

    def role(self, user: User) -> str:
        role = self.text("role")
        if not role or role == MY_ROLES:
            return role
        mine = role_choices(user)
        if role not in mine:
            yours = ", ".join(mine) if mine else "none"
            self.errors["role"] = (
                f"you have no role {role[:64]!r}; filter by one of yours ({yours}) or by"
                f" {MY_ROLES!r} for any of them"
            )
            return ""
        return role

    def statuses(self) -> tuple[str, ...]:
        chosen: list[str] = []
        for value in self.values("status"):
            value = value.strip()
            if not value:
                continue
            if value not in STATUSES:
                self.errors["status"] = (
                    f"{value[:40]!r} is not a job status; use one of {', '.join(STATUSES)}"
                )
                return ()
            if value not in chosen:
                chosen.append(value)
        return tuple(chosen)

    def agent_action(self) -> tuple[str, str]:
        agent, action = self.text("agent", 64), self.text("action", 64)
        agents = available_agents()
        if agent and agent not in agents:
            self.errors["agent"] = f"unknown agent {agent!r}; known: {', '.join(sorted(agents))}"
            return "", ""
        if action and agent and action not in agents[agent].actions:
            known = ", ".join(sorted(agents[agent].actions))
            self.errors["action"] = f"agent {agent!r} has no action {action!r}; it has: {known}"
            return agent, ""
        if action and not agent and action not in action_choices():
            self.errors["action"] = f"no agent has an action {action!r}"
            return "", ""
        return agent, action

    def requester(self) -> tuple[str, int | None]:
        name = self.text("requester", 150)
        if not name:
            return "", None
        model = get_user_model()
        users = model._default_manager.filter(**{model.USERNAME_FIELD: name})
        found = users.values_list("pk", flat=True).first()
        if found is None:
            self.errors["requester"] = f"no user is named {name!r}"
            return "", None
        return name, found

    def day(self, name: str) -> date | None:
        text = self.text(name)
        if not text:
            return None
        if not _DATE.match(text):
            self.errors[name] = f"{text[:20]!r} is not a date; use YYYY-MM-DD"
            return None
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            self.errors[name] = f"{text!r} is not a valid date ({exc})"
            return None

    def cursor(self, name: str) -> int | None:
        text = self.text(name)
        if not text:
            return None
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
            self.errors[name] = f"{text[:20]!r} is not a job id (the cursor of a page link)"
            return None
        return int(text)

    def limit(self, default: int) -> int:
        text = self.text("limit")
        if not text:
            return default
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
            self.errors["limit"] = f"{text[:20]!r} is not a page size from 1 to {MAX_LIMIT}"
            return default
        return int(text)
