"""The audit history of one job and of one node: the audit record joined with the replies.

They are audit pages (managers only, the audit's filters and paging) but read jobs' replies,
so they live in jobs, the app above audit; ``portal/urls.py`` files them under ``audit:``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.audit.filtersets import AuditQueryError, TimelineFilter, checked_text, parse_id
from portal.audit.pages import (
    MAX_IDENTITY,
    audit_readers_only,
    bad_request,
    pager,
    query_timeout,
    stored_id,
    visible_events,
)
from portal.audit.querysets import keyset_page
from portal.audit.timeouts import QueryTooSlow, time_limit
from portal.inventory.models import Node
from portal.jobs.models import Job, NodeReply

# Replies shown per page of a job's history, by identity.
REPLIES_PAGE = 200


@audit_readers_only
def job_history(request: HttpRequest, job_id: int) -> HttpResponse:
    """Every event of one job, and every node's reply (keyset by identity, 200 a page)."""
    job_id = stored_id(job_id)
    try:
        after = checked_text(request.GET.get("after", ""), "after", MAX_IDENTITY)
    except AuditQueryError as exc:
        return render(request, "audit/job.html", {"job_id": job_id, "error": str(exc)}, status=400)
    events = list(visible_events(request).filter(job_id=job_id).order_by("id")[:500])
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
        with time_limit(query_timeout()):
            page, has_newer, has_older = keyset_page(
                visible_events(request).for_node(identity), before, after, selective=True
            )
            job_ids = {event.job_id for event in page if event.job_id is not None}
            replies = {
                reply.job_id: reply
                for reply in NodeReply.objects.filter(identity=identity, job_id__in=job_ids)
            }
    except (AuditQueryError, QueryTooSlow) as exc:
        return bad_request(request, "audit/node.html", context, str(exc))
    for event in page:
        event.node_reply = replies.get(event.job_id)  # type: ignore[attr-defined]
    filters = TimelineFilter()
    context.update(events=page, **pager(filters, page, has_newer, has_older))
    return render(request, "audit/node.html", context)
