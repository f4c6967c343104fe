"""The broker status page: each configured broker, reachable or not, since when, and why."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal.broker.health import check_brokers
from portal.broker.models import BrokerLink


@login_required
@require_http_methods(["GET", "POST"])
def broker_status(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" or not BrokerLink.objects.exists():
        check_brokers()
        if request.method == "POST":
            return redirect("broker:status")
    return render(request, "broker/status.html", {"links": BrokerLink.objects.all()})
