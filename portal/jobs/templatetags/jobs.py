"""Template helpers for the job pages, and the jobs section other apps' pages show."""

from __future__ import annotations

from typing import Any

from django import template

from portal.jobs.forms import input_field_name
from portal.jobs.models import Job, NodeReply

# How many of a node's latest replies its inventory page lists.
JOBS_ON_NODE_PAGE = 50

register = template.Library()


@register.simple_tag
def input_name(agent: str, action: str, name: str) -> str:
    """The form field name of one action's input."""
    return input_field_name(agent, action, name)


@register.inclusion_tag("jobs/_node_jobs.html", takes_context=True)
def jobs_on_node(context: dict[str, Any], identity: str) -> dict[str, Any]:
    """The node page's "recent jobs" table: this node's replies to the jobs the viewer may
    read (the inventory knows no jobs; jobs, above it, fills its section)."""
    user = context["request"].user
    replies = (
        NodeReply.objects.filter(
            identity=identity, job__in=Job.objects.visible_to(user).values("pk")
        )
        .select_related("job")
        .order_by("-job_id")[:JOBS_ON_NODE_PAGE]
    )
    return {"replies": list(replies)}
