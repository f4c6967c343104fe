"""Template helpers for the job pages."""

from __future__ import annotations

from django import template

from portal.jobs.forms import input_field_name

register = template.Library()


@register.simple_tag
def input_name(agent: str, action: str, name: str) -> str:
    """The form field name of one action's input."""
    return input_field_name(agent, action, name)
