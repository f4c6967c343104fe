"""Template filters shared by every app's pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    """``mapping[key]``, or ``None``: for dicts keyed by names with dots or dashes."""
    if not mapping:
        return None
    return mapping.get(key)


@register.filter
def as_json(value: Any) -> str:
    """Compact JSON for showing data as the API and the nodes see it (not Python's repr)."""
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))
