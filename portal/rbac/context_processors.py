"""What the navigation shows: the links to pages the user may open."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from portal.rbac import policy


def access(request: HttpRequest) -> dict[str, Any]:
    # Lazy, and one query for both links: pages that never draw the navigation run none.
    links = SimpleLazyObject(lambda: policy.standing(request.user))
    return {"access": links}
