"""Holds a session that still owes its second factor (``second_factor.PENDING_KEY``) at the
login's second step: pages are redirected there, the API by session answers 403.

After django_otp's ``OTPMiddleware``. A request without a session login (an API token, an
anonymous visitor) passes: a token is its own credential.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from portal.accounts.second_factor import PENDING_ENROL, pending

API_PREFIX = "/api/"


class SecondFactorMiddleware:
    """Only the second step's own pages and the logout answer a session that owes a code or
    an enrolment."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        owed = pending(getattr(request, "session", None))
        # The flag is read first: a session that owes nothing costs no query here.
        if not owed or not request.user.is_authenticated:
            return self.get_response(request)
        step = reverse("accounts:otp-enrol" if owed == PENDING_ENROL else "accounts:otp-verify")
        if request.path in {step, reverse("logout")}:
            return self.get_response(request)
        if request.path.startswith(API_PREFIX):
            return JsonResponse(
                {"detail": "Finish logging in: this session has not given its second factor."},
                status=403,
            )
        query = urlencode({"next": request.get_full_path()}) if request.method == "GET" else ""
        return redirect(f"{step}?{query}" if query else step)
