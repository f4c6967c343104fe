"""Pages for operators: the job list, the job form and the live job page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from portal.jobs.forms import JobFormData
from portal.jobs.models import Job
from portal.jobs.options import DISCOVERY_METHODS
from portal.jobs.services import (
    JobRequestError,
    TargetEstimate,
    available_agents,
    cancel_job,
    check_job_request,
    estimate_targets,
    failed_nodes,
    job_counts,
    parse_filter_text,
    submit_job,
)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.visible_to(request.user).select_related("created_by")
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    """GET shows the form; POST submits through ``submit_job`` or shows each field's error."""
    data = prefill(request)
    errors: dict[str, str] = {}
    if request.method == "POST":
        data = JobFormData.from_post(request.POST)
        try:
            job_filter = parse_filter_text(data.filter_text)
            cleaned, options = check_job_request(data.agent, data.action, data.inputs, data.options)
            estimate = estimate_targets(job_filter, options)
        except JobRequestError as exc:
            errors = exc.errors
        else:
            confirmation = confirm_step(request, data, cleaned, estimate)
            if confirmation is not None:
                return confirmation
            job = submit_job(
                user=request.user,
                agent=data.agent,
                action=data.action,
                inputs=data.inputs,
                filter=job_filter,
                filter_text=data.filter_text,
                source=Job.Source.WEB,
                options=options,
            )
            return redirect("jobs:detail", job_id=job.pk)
    context = {
        "agents": available_agents(),
        "discovery_methods": DISCOVERY_METHODS,
        "data": data,
        "errors": errors,
        "general_errors": {k: v for k, v in errors.items() if not k.startswith("inputs.")},
    }
    return render(request, "jobs/job_form.html", context, status=400 if errors else 200)


def confirm_step(
    request: HttpRequest, data: JobFormData, inputs: dict[str, Any], estimate: TargetEstimate
) -> HttpResponse | None:
    """The confirmation page, unless the operator has just confirmed (``None`` then).

    Shows how many nodes, in which datacenters, before anything is sent; above
    ``SWITCHBOARD_CONFIRM_ABOVE`` nodes the operator must type the count.
    """
    must_type = estimate.count > settings.SWITCHBOARD_CONFIRM_ABOVE
    typed = request.POST.get("typed_count", "").strip()
    error = ""
    if request.POST.get("confirmed"):
        if not must_type or typed == str(estimate.count):
            return None
        error = f"type {estimate.count} to run on {estimate.count} nodes"
    resend = [
        (key, value)
        for key, values in request.POST.lists()
        if key not in {"csrfmiddlewaretoken", "confirmed", "typed_count"}
        for value in values
    ]
    context = {
        "data": data,
        "inputs": inputs,
        "estimate": estimate,
        "must_type": must_type,
        "error": error,
        "resend": resend,
    }
    return render(request, "jobs/job_confirm.html", context, status=400 if error else 200)


def prefill(request: HttpRequest) -> JobFormData:
    """The form's starting values: from the query string, or from a job to run again.

    ``?rerun=<job>&only=failed|no_response`` targets that job's failed or silent nodes with
    the same action and inputs.
    """
    agent, _, action = request.GET.get("agent_action", "rpcutil.ping").partition(".")
    data = JobFormData(agent, action, request.GET.get("filter", ""), {})
    rerun_of, only = request.GET.get("rerun"), request.GET.get("only")
    if rerun_of and rerun_of.isdigit() and only in ("failed", "no_response"):
        job = Job.objects.visible_to(request.user).filter(pk=int(rerun_of)).first()
        if job is not None:
            nodes = failed_nodes(job) if only == "failed" else job.no_response
            text = " or ".join(f"identity:{identity}" for identity in nodes)
            data = JobFormData(job.agent, job.action, text, dict(job.inputs))
    return data


@login_required
@require_http_methods(["POST"])
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    cancel_job(job, request.user)
    return redirect("jobs:detail", job_id=job.pk)


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    return render(request, "jobs/job_detail.html", {"job": job, "counts": job_counts(job)})
