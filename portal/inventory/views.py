"""Inventory pages: the node list (filter search, keyset paging, fact columns), a node's page,
and the admins' enrolment page (pending nodes, key conflicts, decisions)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal.inventory import services
from portal.inventory.api import BadFilter, node_facts, parse_filter
from portal.inventory.enrolment import active_rules
from portal.inventory.models import Enrolment, Node, RefusedRegistrations
from portal.inventory.pg_regex import UnsupportedFilter
from portal.inventory.visibility import inventory_scope, visible_nodes
from portal.rbac.policy import may_administer

PAGE_SIZE = 50
DEFAULT_COLUMNS = ["customer", "role", "datacenter"]
# Offered by the column picker; any fact name may be typed.
COMMON_COLUMNS = [
    "customer",
    "role",
    "datacenter",
    "environment",
    "os",
    "operatingsystem",
    "kernel",
    "processorcount",
    "memorysize",
    "ipaddress",
]
MAX_COLUMNS = 12
_COLUMN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}$")


def parse_columns(raw: str | None) -> list[str]:
    """``?columns=os,role``: valid fact names, deduplicated, at most MAX_COLUMNS."""
    if raw is None:
        return list(DEFAULT_COLUMNS)
    names = [name.strip() for name in raw.replace(" ", ",").split(",")]
    return list(dict.fromkeys(n for n in names if _COLUMN.match(n)))[:MAX_COLUMNS]


def _query(**params: Any) -> str:
    return "?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _cell(facts: Any, name: str) -> dict[str, Any]:
    value = node_facts(facts, [name]).get(name, _ABSENT)
    if value is _ABSENT:
        return {"missing": True, "text": ""}
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {"missing": False, "text": text}


_ABSENT = object()


@login_required
def node_list(request: HttpRequest) -> HttpResponse:
    """``?q=<filter>&columns=a,b&after=<identity>|before=<identity>``, 50 nodes a page.

    Keyset paging on the unique ``identity``: one SELECT of PAGE_SIZE + 1 rows per page and
    no COUNT, so page 2,000 of 100,000 nodes costs what page 1 does. Only the nodes the user
    may see are listed (``portal.inventory.visibility``); when that is a scope, the page says so
    and how many nodes inside it match (one COUNT, bounded by the scope).
    """
    text = request.GET.get("q", "")
    columns = parse_columns(request.GET.get("columns"))
    columns_param = ",".join(columns) if "columns" in request.GET else ""
    after = request.GET.get("after", "")[:255]
    before = request.GET.get("before", "")[:255]
    scope = inventory_scope(request.user)
    context: dict[str, Any] = {
        "q": text,
        "columns": columns,
        "columns_text": ",".join(columns),
        "common_columns": COMMON_COLUMNS,
        "rows": [],
        "error": None,
        "next_url": None,
        "prev_url": None,
        "first_url": None,
        "scope": scope,
        "scope_count": None,
    }
    try:
        nodes = scope.restrict(Node.objects.matching(parse_filter(text)))
        nodes = nodes.only("identity", "facts", "last_seen")
        if scope.scoped:
            context["scope_count"] = nodes.count()
        if before:
            page = list(nodes.filter(identity__lt=before).order_by("-identity")[: PAGE_SIZE + 1])
            has_more_before = len(page) > PAGE_SIZE
            page = page[:PAGE_SIZE][::-1]
            has_more_after = True
        else:
            if after:
                nodes = nodes.filter(identity__gt=after)
            page = list(nodes.order_by("identity")[: PAGE_SIZE + 1])
            has_more_after = len(page) > PAGE_SIZE
            page = page[:PAGE_SIZE]
            has_more_before = bool(after)
    except BadFilter as exc:
        context["error"] = {"message": exc.message, "column": exc.column}
        return render(request, "inventory/node_list.html", context, status=400)
    except UnsupportedFilter as exc:
        context["error"] = {"message": str(exc), "column": None}
        return render(request, "inventory/node_list.html", context, status=400)
    base = {"q": text, "columns": columns_param}
    if page and has_more_after:
        context["next_url"] = _query(**base, after=page[-1].identity)
    if page and has_more_before:
        context["prev_url"] = _query(**base, before=page[0].identity)
    if after or before:
        context["first_url"] = _query(**base)
    context["rows"] = [
        {
            "identity": node.identity,
            "stale": node.is_stale,
            "last_seen": node.last_seen,
            "cells": [_cell(node.facts, column) for column in columns],
        }
        for node in page
    ]
    return render(request, "inventory/node_list.html", context)


@login_required
def node_detail(request: HttpRequest, identity: str) -> HttpResponse:
    """One node's registration, facts and (the jobs app's section) the user's recent jobs on it.

    A node outside what the user may see answers 404, as one that does not exist does.
    """
    try:
        node = visible_nodes(request.user, Node.objects.all()).filter(identity=identity).first()
    except UnsupportedFilter as exc:  # a scope the database cannot evaluate as the nodes do
        context = {"identity": identity, "error": str(exc)}
        return render(request, "inventory/node_detail.html", context, status=400)
    if node is None:
        context = {"identity": identity, "missing": True}
        return render(request, "inventory/node_detail.html", context, status=404)
    context = {
        "node": node,
        "enrolment": Enrolment.objects.filter(identity=node.identity).first(),
        "may_decide": may_administer(request.user),
        "node_actions": [("revoke", "Revoke", "secondary")],
        "conflict_actions": [("rekey", "Re-key", "secondary")],
        "facts": sorted(node.facts.items()) if isinstance(node.facts, dict) else [],
    }
    return render(request, "inventory/node_detail.html", context)


ENROLMENT_LIST_SIZE = 200


@login_required
def enrolment(request: HttpRequest) -> HttpResponse:
    """Admins: nodes waiting for a decision, key conflicts, rejected and revoked nodes, the
    auto-accept rules in force and the registrations refused by reason."""
    if not may_administer(request.user):
        return HttpResponseForbidden("only admins decide which nodes are trusted")
    State = Enrolment.State
    enrolments = Enrolment.objects.order_by("identity")
    counts = dict(
        enrolments.order_by().values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    context = {
        "pending": list(enrolments.filter(state=State.PENDING)[:ENROLMENT_LIST_SIZE]),
        "conflicts": list(
            enrolments.exclude(conflict_key_id="").exclude(state=State.PENDING)[
                :ENROLMENT_LIST_SIZE
            ]
        ),
        "refused_nodes": list(
            enrolments.filter(state__in=[State.REJECTED, State.REVOKED])[:ENROLMENT_LIST_SIZE]
        ),
        "counts": {state.value: counts.get(state.value, 0) for state in State},
        "list_size": ENROLMENT_LIST_SIZE,
        "rules": active_rules(),
        "identity_pattern": django_settings.SWITCHBOARD_AUTO_ACCEPT_IDENTITIES,
        "refusals": list(RefusedRegistrations.objects.all()),
        "pending_actions": [("accept", "Accept", ""), ("reject", "Reject", "secondary")],
        "conflict_actions": [("rekey", "Re-key", "secondary")],
        "rejected_actions": [("accept", "Accept", "secondary"), ("forget", "Forget", "secondary")],
        "revoked_actions": [("forget", "Forget", "secondary")],
    }
    return render(request, "inventory/enrolment.html", context)


DECISION_MESSAGES = {
    "accept": "{identity} accepted: its key {key_id} is pinned.",
    "reject": "{identity} rejected: its registrations are refused.",
    "revoke": "{identity} revoked: it left the inventory and its replies are refused.",
    "rekey": "{identity} re-keyed: key {key_id} is trusted now.",
    "forget": "{identity} forgotten: it may enrol again.",
}


@login_required
@require_POST
def enrolment_decide(request: HttpRequest, identity: str, decision: str) -> HttpResponse:
    """POST: accept, reject, revoke, re-key or forget one node; back to where it came from
    with a message saying what happened (or why not)."""
    if not may_administer(request.user):
        return HttpResponseForbidden("only admins decide which nodes are trusted")
    decide = services.ENROLMENT_DECISIONS.get(decision)
    if decide is None:
        return HttpResponse("unknown decision", status=404, content_type="text/plain")
    done = DECISION_MESSAGES[decision]
    try:
        result = decide(identity, request.user, request)
    except services.EnrolmentError as exc:
        messages.error(request, str(exc))
    else:
        key_id = result.key_id if result is not None else ""
        messages.success(request, done.format(identity=identity, key_id=key_id))
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        target = ""
    return redirect(target or "enrolment")
