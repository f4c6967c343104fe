"""Charts of the audit history, as data for server-rendered inline SVG (no JavaScript).

Two aggregate queries per page, each grouped by day in SQL over an id range (see
``AuditEventQuerySet.between``); the shapes are laid out here, the template only draws them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Case, Count, F, FloatField, Func, IntegerField, Q, Sum, When
from django.db.models.functions import TruncDate

from portal.audit.filtersets import AuditQueryError, TimelineFilter
from portal.audit.kinds import Kind
from portal.audit.querysets import AuditEventQuerySet

MAX_DAYS = 366
MAX_SERIES = 6  # agents drawn by name; the rest are summed as "other"
WIDTH, HEIGHT = 880, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 26
# Jobs that never ran are left out of the failure rate.
NEVER_RAN = ("rejected", "expired")
FAILED_OUTCOMES = ("failed", "interrupted")


class CountInData(Func):
    """``data.counts.<key>`` of a job.finished event as a number; 0 when absent or not a
    number (so odd data can never fail the query)."""

    output_field = FloatField()

    def __init__(self, key: str) -> None:
        if not key.replace("_", "").isalpha():
            raise ValueError(f"bad counts key {key!r}")
        self.key = key
        super().__init__()

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        path = f"$.counts.{self.key}"
        return "COALESCE(CAST(json_extract(audit_auditevent.data, %s) AS REAL), 0)", [path]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        value = f"(audit_auditevent.data -> 'counts' -> '{self.key}')"
        return (
            f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value})::text::float8 ELSE 0 END)",
            [],
        )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class StackedBars:
    """Actions per day, stacked by agent."""

    bars: list[Bar]
    legend: list[tuple[int, str, int]]  # (series, agent, total)
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total: int
    table: list[tuple[date, dict[str, int]]]


@dataclass(frozen=True)
class RateLine:
    """One line of the failure-rate chart."""

    series: int
    label: str
    points: str  # SVG polyline points
    dots: list[tuple[float, float, str]]


@dataclass(frozen=True)
class RateChart:
    lines: list[RateLine]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    table: list[tuple[date, int, int, float | None, float | None]]


def _days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=offset) for offset in range(count)]


def _x(index: int, count: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * index / max(count, 1)


def _x_ticks(days: list[date]) -> list[Tick]:
    step = max(1, len(days) // 8)
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    return [
        Tick(round(_x(i, len(days)) + slot / 2, 1), day.strftime("%m-%d"))
        for i, day in enumerate(days)
        if i % step == 0
    ]


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value``."""
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return int(factor * magnitude)
    return value


def actions_per_day(events: AuditEventQuerySet, first: date, count: int) -> StackedBars:
    """Jobs submitted per day and agent, over ``count`` days from ``first``."""
    rows = (
        events.filter(kind=Kind.JOB_SUBMITTED)
        .annotate(day=TruncDate("at"))
        .values("day", "agent")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_day: dict[date, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        per_day[row["day"]][row["agent"]] = row["n"]
        totals[row["agent"]] += row["n"]
    named = [agent for agent, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    named, rest = named[:MAX_SERIES], set(named[MAX_SERIES:])
    days = _days(first, count)
    peak = max((sum(per_day[day].values()) for day in days), default=0)
    top = _nice_max(peak)
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    bars = []
    for index, day in enumerate(days):
        counts = per_day.get(day, {})
        stack = [(i, agent, counts.get(agent, 0)) for i, agent in enumerate(named)]
        if rest:
            stack.append((MAX_SERIES, "other", sum(counts.get(agent, 0) for agent in rest)))
        base = 0
        for series, agent, n in stack:
            if not n:
                continue
            height = plot_height * n / top
            y = TOP + plot_height * (1 - (base + n) / top)
            bars.append(
                Bar(
                    round(_x(index, count) + slot * 0.1, 1),
                    round(y, 1),
                    round(max(slot * 0.8, 1), 1),
                    round(height, 1),
                    series,
                    f"{day:%Y-%m-%d} {agent}: {n}",
                )
            )
            base += n
    legend = [(i, agent, totals[agent]) for i, agent in enumerate(named)]
    if rest:
        legend.append((MAX_SERIES, "other", sum(totals[agent] for agent in rest)))
    y_ticks = [
        Tick(round(TOP + plot_height * (1 - value / top), 1), str(value))
        for value in (0, top // 2, top)
    ]
    table = [(day, dict(sorted(per_day.get(day, {}).items()))) for day in days]
    return StackedBars(bars, legend, y_ticks, _x_ticks(days), sum(totals.values()), table)


def failure_rate(events: AuditEventQuerySet, first: date, count: int) -> RateChart:
    """Per day: the share of finished jobs with a failed or silent node (or that failed or
    were interrupted), and the share of targeted nodes that failed or did not answer."""
    failed, silent = CountInData("failed"), CountInData("no_response")
    rows = (
        events.filter(kind=Kind.JOB_FINISHED)
        .exclude(outcome__in=NEVER_RAN)
        .annotate(day=TruncDate("at"), n_failed=failed, n_silent=silent)
        .annotate(n_expected=CountInData("expected"))
        .values("day")
        .annotate(
            jobs=Count("id"),
            bad_jobs=Sum(
                Case(
                    When(
                        Q(outcome__in=FAILED_OUTCOMES) | Q(n_failed__gt=0) | Q(n_silent__gt=0),
                        then=1,
                    ),
                    default=0,
                    output_field=IntegerField(),
                )
            ),
            nodes=Sum("n_expected"),
            bad_nodes=Sum(F("n_failed") + F("n_silent")),
        )
        .order_by()
    )
    by_day = {row["day"]: row for row in rows}
    days = _days(first, count)
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    table = []
    series: list[list[tuple[float, float, str]]] = [[], []]
    for index, day in enumerate(days):
        row = by_day.get(day)
        if row is None or not row["jobs"]:
            table.append((day, 0, 0, None, None))
            continue
        job_rate = 100.0 * (row["bad_jobs"] or 0) / row["jobs"]
        node_rate = (
            100.0 * min(row["bad_nodes"] or 0, row["nodes"]) / row["nodes"]
            if row["nodes"]
            else None
        )
        table.append((day, row["jobs"], row["bad_jobs"] or 0, job_rate, node_rate))
        x = round(_x(index, count) + slot / 2, 1)
        for which, rate in enumerate((job_rate, node_rate)):
            if rate is not None:
                y = round(TOP + plot_height * (1 - rate / 100), 1)
                series[which].append((x, y, f"{day:%Y-%m-%d}: {rate:.1f}%"))
    labels = ("jobs with a failure", "nodes failed or silent")
    lines = [
        RateLine(i, labels[i], " ".join(f"{x},{y}" for x, y, _ in points), points)
        for i, points in enumerate(series)
    ]
    y_ticks = [Tick(round(TOP + plot_height * (1 - v / 100), 1), f"{v}%") for v in (0, 50, 100)]
    return RateChart(lines, y_ticks, _x_ticks(days), table)


def chart_window(filters: TimelineFilter, now: datetime) -> tuple[datetime, datetime, date, int]:
    """The charts' range: the filter's, else the 30 days up to today; whole UTC days.

    Returns start, end, the first day and the number of days; ``AuditQueryError`` beyond
    ``MAX_DAYS``.
    """
    end = filters.end or _next_midnight(now)
    try:
        start = filters.start or end - timedelta(days=30)
    except OverflowError:  # a range ending in year 1
        start = datetime.min.replace(tzinfo=UTC)
    if start >= end:
        raise AuditQueryError(
            "from", "the range starts after it ends (charts end today unless To says)"
        )
    first_day = start.astimezone(UTC).date()
    last_day = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    days = (last_day - first_day).days + 1
    if days > MAX_DAYS:
        raise AuditQueryError(
            "from", f"charts cover at most {MAX_DAYS} days; this range has {days}"
        )
    return start, end, first_day, days


def _next_midnight(moment: datetime) -> datetime:
    day = moment.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
