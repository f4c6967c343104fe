"""Error pages that say what went wrong where Django's own say only "Bad Request" or
"Forbidden": a host the portal does not serve, a form post from an origin it does not trust.

Both are what a wrong ``ALLOWED_HOSTS`` or ``CSRF_TRUSTED_ORIGINS`` behind a proxy looks like
to the person at the browser; ``manage.py check --deploy`` names the setting to fix
(``portal.core.checks.check_public_address``). Neither page reveals anything the request did
not already carry.
"""

from __future__ import annotations

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400: for a host outside ``ALLOWED_HOSTS``, say that this is the reason."""
    disallowed_host = isinstance(exception, DisallowedHost)
    host = request.META.get("HTTP_HOST", "") if disallowed_host else ""
    body = render_to_string("400.html", {"disallowed_host": disallowed_host, "host": host})
    return HttpResponse(body, status=400)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """403 for a refused form post, with Django's reason (e.g. "Origin checking failed")."""
    body = render_to_string("403_csrf.html", {"reason": reason}, request=request)
    return HttpResponse(body, status=403)
