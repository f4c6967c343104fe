"""Template filters for the audit pages."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from portal.audit import permissions

register = template.Library()


@register.filter
def can_read_audit(user: AbstractBaseUser | AnonymousUser) -> bool:
    """``{% if user|can_read_audit %}``: whether this user may open the audit pages."""
    return permissions.can_read_audit(user)


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON with sorted keys, for an event's data."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)


@register.filter
def short_hash(value: str) -> str:
    return value[:12]
