"""Inventory pages: the node list (filter search, keyset paging, fact columns) and a node's page."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from portal.inventory.api import BadFilter, node_facts, parse_filter
from portal.inventory.models import Node
from portal.inventory.pg_regex import UnsupportedFilter
from portal.jobs.models import Job, NodeReply

PAGE_SIZE = 50
JOBS_ON_NODE_PAGE = 50
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
    no COUNT, so page 2,000 of 100,000 nodes costs what page 1 does.
    """
    text = request.GET.get("q", "")
    columns = parse_columns(request.GET.get("columns"))
    columns_param = ",".join(columns) if "columns" in request.GET else ""
    after = request.GET.get("after", "")[:255]
    before = request.GET.get("before", "")[:255]
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
    }
    try:
        nodes = Node.objects.matching(parse_filter(text)).only("identity", "facts", "last_seen")
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
    node = get_object_or_404(Node, identity=identity)
    replies = (
        NodeReply.objects.filter(
            identity=node.identity, job__in=Job.objects.visible_to(request.user).values("pk")
        )
        .select_related("job")
        .order_by("-job_id")[:JOBS_ON_NODE_PAGE]
    )
    context = {
        "node": node,
        "facts": sorted(node.facts.items()) if isinstance(node.facts, dict) else [],
        "replies": list(replies),
    }
    return render(request, "inventory/node_detail.html", context)
