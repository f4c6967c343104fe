"""Denied pages and API calls on the audit record (``access.denied``).

Every 403 answered to a logged-in user becomes one event, whatever answered it: a view's
``PermissionDenied`` (the audit, access and enrolment pages), DRF's permission checks on the
API, a failed CSRF check on a logged-in session. Not recorded:

* anonymous requests (no session, a bad token, a login form's CSRF failure): there is nobody
  to name, and anyone on the network could otherwise write to the append-only history;
* 404s, including another role's job (``visible_to`` answers 404 so as not to say the job
  exists): a 404 cannot tell a forbidden object from a mistyped or stale link;
* a 403 whose refusal is already recorded with more detail (``job.refused``, marked by
  ``refusals.record_refusal``).

The flood guard in ``refusals.record_throttled`` keeps it to one event per user, method, path
and status per minute, with the repeats counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase

from portal.audit.refusals import RequestRefusal, current_request_refusal, record_denial

logger = logging.getLogger(__name__)

DENIED_STATUSES = frozenset({403})


class AccessDeniedMiddleware:
    """Record each 403 answered to a logged-in user as an ``access.denied`` event.

    Place it after ``AuthenticationMiddleware``. It reads the user after the view ran, so a
    user DRF authenticated by token is the one recorded.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        refusal = RequestRefusal()
        token = current_request_refusal.set(refusal)
        try:
            response = self.get_response(request)
        finally:
            current_request_refusal.reset(token)
        if response.status_code in DENIED_STATUSES and not refusal.recorded:
            self._record(request, response, refusal)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """Keep the reason a view gave for its ``PermissionDenied``; Django answers the 403."""
        refusal = current_request_refusal.get()
        if refusal is not None and isinstance(exception, PermissionDenied):
            refusal.reason = str(exception)

    def _record(
        self, request: HttpRequest, response: HttpResponseBase, refusal: RequestRefusal
    ) -> None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return
        reason = refusal.reason or _drf_detail(response)
        try:
            record_denial(request, user, response.status_code, reason)
        except DatabaseError:
            # The user is still answered 403; the log says the record is missing.
            logger.exception("could not record the denial of %s %s", request.method, request.path)


def _drf_detail(response: HttpResponseBase) -> str:
    """The reason an API view gave (DRF's ``detail``, or our views' ``error``), read from the
    response's data before rendering, never from a body."""
    data = getattr(response, "data", None)
    if isinstance(data, dict):
        for key in ("detail", "error"):
            if isinstance(data.get(key), str):
                return data[key]
    return ""
