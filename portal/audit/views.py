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
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from portal.audit import charts, kinds
from portal.audit.chain import event_hash
from portal.audit.export import FORMATS, export_pieces, streaming_response
from portal.audit.filtersets import (
    MAX_ID,
    AuditQueryError,
    TimelineFilter,
    checked_text,
    parse_id,
)
from portal.audit.models import AuditEvent
from portal.audit.permissions import can_read_audit
from portal.audit.querysets import AuditEventQuerySet, keyset_page
from portal.audit.services import record_event
from portal.audit.timeouts import QueryTooSlow, time_limit
from portal.inventory.models import Node
from portal.jobs.models import Job, NodeReply

MAX_IDENTITY = 255
REPLIES_PAGE = 200
NODES_SHOWN = 500
OUTCOMES = ("ok", "failed", "completed", "interrupted", "cancelled", "approved", "rejected",
            "expired")  # fmt: skip
View = Callable[..., HttpResponse]


def audit_readers_only(view: View) -> View:
    """Log in first; then only those ``can_read_audit`` allows (403 for anyone else)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_read_audit(request.user):
            raise PermissionDenied("The audit history is for managers.")
        return view(request, *args, **kwargs)

    return wrapped


def api_token_accepted(view: View) -> View:
    """Let a script authenticate with ``Authorization: Token <key>`` (DRF's tokens, as the API).

    Without that header the session decides, as on every page. A malformed, unknown or
    deactivated account's token is a 401 naming the scheme; a valid one makes its user the
    request's user, so the view's own check (403 for non-managers) and the denial record
    see who it was.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            found = TokenAuthentication().authenticate(request)
        except AuthenticationFailed as exc:
            response = HttpResponse(
                f"{exc.detail}\n", status=401, content_type="text/plain; charset=utf-8"
            )
            response["WWW-Authenticate"] = TokenAuthentication.keyword
            return response
        if found is not None:
            request.user = found[0]
        return view(request, *args, **kwargs)

    return wrapped


def _events(request: HttpRequest) -> AuditEventQuerySet:
    return AuditEvent.objects.visible_to(request.user)


def _stored_id(value: int) -> int:
    """A path's id, or 404 when no row could have it (beyond a 64-bit integer)."""
    if value > MAX_ID:
        raise Http404("no such id")
    return value


def _timeout() -> float:
    return float(settings.SWITCHBOARD_AUDIT_QUERY_TIMEOUT)


def _pager(
    filters: TimelineFilter, page: list[AuditEvent], has_newer: bool, has_older: bool
) -> dict[str, str | None]:
    return {
        "newer_url": filters.query_string(after=page[0].pk) if page and has_newer else None,
        "older_url": filters.query_string(before=page[-1].pk) if page and has_older else None,
        "newest_url": filters.query_string() if has_newer else None,
    }


def _bad_request(
    request: HttpRequest, template: str, context: dict[str, Any], message: str
) -> HttpResponse:
    context = {**context, "error": message, "events": []}
    return render(request, template, context, status=400)


def _filter_context() -> dict[str, Any]:
    return {
        "filters": TimelineFilter(),
        "kinds": kinds.KNOWN_KINDS,
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
        with time_limit(_timeout()):
            events = filters.apply(_events(request))
            page, has_newer, has_older = keyset_page(
                events, before, after, selective=bool(filters.node)
            )
    except (AuditQueryError, QueryTooSlow) as exc:
        return _bad_request(request, "audit/timeline.html", context, str(exc))
    context.update(events=page, **_pager(filters, page, has_newer, has_older))
    context["export_query"] = filters.query_string()
    return render(request, "audit/timeline.html", context)


@audit_readers_only
def event_detail(request: HttpRequest, event_id: int) -> HttpResponse:
    """One event with all its data, its hash re-checked, and its neighbours in the chain."""
    event = get_object_or_404(_events(request), pk=_stored_id(event_id))
    previous = _events(request).filter(id__lt=event.pk).order_by("-id").values("id", "hash").first()
    following = _events(request).filter(id__gt=event.pk).order_by("id").values("id").first()
    fields = {name: getattr(event, name) for name in ("at", "kind", "actor", "roles",
              "source_ip", "agent", "action", "job_id", "outcome", "summary", "data", "nodes",
              "prev_hash")}  # fmt: skip
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
def job_history(request: HttpRequest, job_id: int) -> HttpResponse:
    """Every event of one job, and every node's reply (keyset by identity, 200 a page)."""
    job_id = _stored_id(job_id)
    try:
        after = checked_text(request.GET.get("after", ""), "after", MAX_IDENTITY)
    except AuditQueryError as exc:
        return render(request, "audit/job.html", {"job_id": job_id, "error": str(exc)}, status=400)
    events = list(_events(request).filter(job_id=job_id).order_by("id")[:500])
    job = Job.objects.filter(pk=job_id).select_related("created_by").first()
    replies: list[NodeReply] = []
    more = False
    if job is not None:
        rows = NodeReply.objects.filter(job_id=job_id, identity__gt=after).order_by("identity")
        replies = list(rows[: REPLIES_PAGE + 1])
        more = len(replies) > REPLIES_PAGE
        replies = replies[:REPLIES_PAGE]
    if job is None and not events:
        return render(request, "audit/job.html", {"job_id": job_id, "missing": True}, status=404)
    context = {
        "job_id": job_id,
        "job": job,
        "events": events,
        "replies": replies,
        "replies_after": after,
        "next_replies": "?" + urlencode({"after": replies[-1].identity}) if more else None,
        "no_response": job.no_response if job is not None else [],
    }
    return render(request, "audit/job.html", context)


@audit_readers_only
def node_history(request: HttpRequest, identity: str) -> HttpResponse:
    """Events that concern one node, newest first, with its reply to each job (one query)."""
    context: dict[str, Any] = {"identity": identity, "node": None}
    try:
        identity = checked_text(identity, "node", MAX_IDENTITY)
        context["node"] = Node.objects.filter(identity=identity).first()
        before, after = parse_id(request.GET, "before"), parse_id(request.GET, "after")
        with time_limit(_timeout()):
            page, has_newer, has_older = keyset_page(
                _events(request).for_node(identity), before, after, selective=True
            )
            job_ids = {event.job_id for event in page if event.job_id is not None}
            replies = {
                reply.job_id: reply
                for reply in NodeReply.objects.filter(identity=identity, job_id__in=job_ids)
            }
    except (AuditQueryError, QueryTooSlow) as exc:
        return _bad_request(request, "audit/node.html", context, str(exc))
    for event in page:
        event.node_reply = replies.get(event.job_id)  # type: ignore[attr-defined]
    filters = TimelineFilter()
    context.update(events=page, **_pager(filters, page, has_newer, has_older))
    return render(request, "audit/node.html", context)


@audit_readers_only
def chart_page(request: HttpRequest) -> HttpResponse:
    """Actions per day by agent and the failure rate of the filtered events."""
    context = _filter_context()
    try:
        filters = TimelineFilter.from_params(request.GET)
        context["filters"] = filters
        start, end, first_day, days = charts.chart_window(filters, timezone.now())
        events = replace(filters, start=start, end=end).apply(_events(request))
        with time_limit(_timeout()):
            context["actions"] = charts.actions_per_day(events, first_day, days)
            context["failures"] = charts.failure_rate(events, first_day, days)
    except (AuditQueryError, QueryTooSlow) as exc:
        return _bad_request(request, "audit/charts.html", context, str(exc))
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
        events = filters.apply(_events(request))
    except AuditQueryError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    through = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    record_event(
        kinds.AUDIT_EXPORTED,
        request=request,
        outcome="ok",
        summary=f"exported {fmt} of {'all events' if filters.is_empty else 'filtered events'}"
        f" through event {through}",
        data={"format": fmt, "filters": filters.as_data(), "through_id": through},
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    filename = f"switchboard-audit-{stamp}.{fmt}"
    return streaming_response(request, export_pieces(events, through, fmt), fmt, filename)
