"""Manager pages: the timeline, an event, a job's and a node's history, charts, exports.

Each view checks ``can_read_audit``, reads its filters through ``TimelineFilter`` (a 400 on
bad input), bounds its queries with ``time_limit`` (a 400 when a search is too slow) and pages
by keyset on the event id: one query of PAGE_SIZE + 1 rows per page, no COUNT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from portal.accounts.authentication import ApiTokenAuthentication
from portal.audit import charts, kinds
from portal.audit.chain import HASHED_FIELDS, event_hash
from portal.audit.export import FORMATS, export_pieces, streaming_response
from portal.audit.filtersets import (
    AuditQueryError,
    TimelineFilter,
    parse_id,
)
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent
from portal.audit.pages import (
    audit_readers_only,
    bad_request,
    pager,
    query_timeout,
    stored_id,
    visible_events,
)
from portal.audit.querysets import keyset_page
from portal.audit.services import record_event
from portal.audit.timeouts import QueryTooSlow, time_limit

NODES_SHOWN = 500
OUTCOMES = ("ok", "failed", "completed", "interrupted", "cancelled", "approved", "rejected",
            "expired")  # fmt: skip
View = Callable[..., HttpResponse]


def api_token_accepted(view: View) -> View:
    """Let a script authenticate with ``Authorization: Token <key>`` (the API's tokens).

    Without that header the session decides, as on every page. A malformed, unknown, revoked
    or expired token, or a deactivated account's, is a 401 naming the scheme and why; a valid
    one makes its user the request's user, so the view's own check (403 for non-managers) and
    the denial record see who it was.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            found = ApiTokenAuthentication().authenticate(request)
        except AuthenticationFailed as exc:
            response = HttpResponse(
                f"{exc.detail}\n", status=401, content_type="text/plain; charset=utf-8"
            )
            response["WWW-Authenticate"] = ApiTokenAuthentication.keyword
            return response
        if found is not None:
            request.user = found[0]
        return view(request, *args, **kwargs)

    return wrapped


def _filter_context() -> dict[str, Any]:
    return {
        "filters": TimelineFilter(),
        "kinds": dict(Kind.choices),
        "kind_groups": kinds.kind_groups(),
        "outcomes": OUTCOMES,
    }


@audit_readers_only
def timeline(request: HttpRequest) -> HttpResponse:
    """Events newest first, filtered, 50 a page."""
    context = _filter_context()
    try:
        filters = TimelineFilter.from_params(request.GET)
        before, after = parse_id(request.GET, "before"), parse_id(request.GET, "after")
        context["filters"] = filters
        with time_limit(query_timeout()):
            events = filters.apply(visible_events(request))
            page, has_newer, has_older = keyset_page(
                events, before, after, selective=bool(filters.node)
            )
    except (AuditQueryError, QueryTooSlow) as exc:
        return bad_request(request, "audit/timeline.html", context, str(exc))
    context.update(events=page, **pager(filters, page, has_newer, has_older))
    context["export_query"] = filters.query_string()
    return render(request, "audit/timeline.html", context)


@audit_readers_only
def event_detail(request: HttpRequest, event_id: int) -> HttpResponse:
    """One event with all its data, its hash re-checked, and its neighbours in the chain."""
    event = get_object_or_404(visible_events(request), pk=stored_id(event_id))
    previous = (
        visible_events(request).filter(id__lt=event.pk).order_by("-id").values("id", "hash").first()
    )
    following = visible_events(request).filter(id__gt=event.pk).order_by("id").values("id").first()
    fields = {name: getattr(event, name) for name in HASHED_FIELDS}
    context = {
        "event": event,
        "hash_ok": event_hash(fields) == event.hash,
        "linked": previous is None or previous["hash"] == event.prev_hash,
        "previous_id": previous["id"] if previous else None,
        "next_id": following["id"] if following else None,
        "nodes_shown": event.nodes[:NODES_SHOWN],
        "nodes_hidden": max(len(event.nodes) - NODES_SHOWN, 0),
    }
    return render(request, "audit/event_detail.html", context)


@audit_readers_only
def chart_page(request: HttpRequest) -> HttpResponse:
    """Actions per day by agent and the failure rate of the filtered events."""
    context = _filter_context()
    try:
        filters = TimelineFilter.from_params(request.GET)
        context["filters"] = filters
        start, end, first_day, days = charts.chart_window(filters, timezone.now())
        events = replace(filters, start=start, end=end).apply(visible_events(request))
        with time_limit(query_timeout()):
            context["actions"] = charts.actions_per_day(events, first_day, days)
            context["failures"] = charts.failure_rate(events, first_day, days)
    except (AuditQueryError, QueryTooSlow) as exc:
        return bad_request(request, "audit/charts.html", context, str(exc))
    context.update(
        first_day=first_day,
        last_day=first_day + timedelta(days=days - 1),
        width=charts.WIDTH,
        height=charts.HEIGHT,
        plot_left=charts.LEFT,
        plot_right=charts.WIDTH - charts.RIGHT,
        baseline=charts.HEIGHT - charts.BOTTOM,
    )
    return render(request, "audit/charts.html", context)


@api_token_accepted
@audit_readers_only
def export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The filtered events, oldest first, as CSV or JSON lines, streamed.

    Managers script it: an API token (``Authorization: Token <key>``) is accepted as well as
    a session.

    Recorded first as an ``audit.exported`` event naming the filters and the last event
    included, so the export shows in the history it was taken from.
    """
    if fmt not in FORMATS:
        return HttpResponseBadRequest(f"unknown export format {fmt[:20]!r}; use csv or jsonl")
    try:
        filters = TimelineFilter.from_params(request.GET)
        events = filters.apply(visible_events(request))
    except AuditQueryError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    through = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    record_event(
        Kind.AUDIT_EXPORTED,
        request=request,
        outcome="ok",
        summary=f"exported {fmt} of {'all events' if filters.is_empty else 'filtered events'}"
        f" through event {through}",
        data={"format": fmt, "filters": filters.as_data(), "through_id": through},
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    filename = f"switchboard-audit-{stamp}.{fmt}"
    return streaming_response(request, export_pieces(events, through, fmt), fmt, filename)
