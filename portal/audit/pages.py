"""What every audit history page shares: who may open it, the events they may read, the query
time limit, keyset paging links and the 400 page.

The jobs app's pages of one job's and one node's history (``portal.jobs.history``) use these
too: they join the audit record with the jobs' replies, so they live in jobs, above audit.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from portal.audit.filtersets import MAX_ID, TimelineFilter
from portal.audit.models import AuditEvent
from portal.audit.permissions import can_read_audit
from portal.audit.querysets import AuditEventQuerySet

# The longest node identity a page's path or query may name.
MAX_IDENTITY = 255
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


def visible_events(request: HttpRequest) -> AuditEventQuerySet:
    return AuditEvent.objects.visible_to(request.user)


def stored_id(value: int) -> int:
    """A path's id, or 404 when no row could have it (beyond a 64-bit integer)."""
    if value > MAX_ID:
        raise Http404("no such id")
    return value


def query_timeout() -> float:
    return float(settings.SWITCHBOARD_AUDIT_QUERY_TIMEOUT)


def pager(
    filters: TimelineFilter, page: list[AuditEvent], has_newer: bool, has_older: bool
) -> dict[str, str | None]:
    return {
        "newer_url": filters.query_string(after=page[0].pk) if page and has_newer else None,
        "older_url": filters.query_string(before=page[-1].pk) if page and has_older else None,
        "newest_url": filters.query_string() if has_newer else None,
    }


def bad_request(
    request: HttpRequest, template: str, context: dict[str, Any], message: str
) -> HttpResponse:
    context = {**context, "error": message, "events": []}
    return render(request, template, context, status=400)
