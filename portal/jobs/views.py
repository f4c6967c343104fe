"""Pages for operators: the job list, the job form and the live job page."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from agents.ddl import AgentDDL
from portal.jobs import approvals
from portal.jobs.forms import JobFormData
from portal.jobs.models import Job
from portal.jobs.options import DISCOVERY_METHODS, collectives
from portal.jobs.services import (
    JobForbidden,
    JobRequestError,
    TargetEstimate,
    authorize_request,
    available_agents,
    cancel_job,
    check_job_request,
    check_reason,
    estimate_targets,
    failed_nodes,
    job_counts,
    parse_filter_text,
    resolve_action,
    submit_job,
)
from portal.rbac.models import Approval
from portal.rbac.policy import (
    Permit,
    confirmation_rules,
    may_approve,
    may_approve_jobs,
    may_cancel,
    runnable_actions,
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
    status = 200
    if request.method == "POST":
        data = JobFormData.from_post(request.POST)
        try:
            job_filter = parse_filter_text(data.filter_text)
            permit = authorize_request(
                request.user, data.agent, data.action, job_filter,
                source=Job.Source.WEB, filter_text=data.filter_text, request=request,
            )  # fmt: skip
            cleaned, options = check_job_request(data.agent, data.action, data.inputs, data.options)
            estimate = estimate_targets(permit.effective_filter, options)
        except JobRequestError as exc:
            errors = exc.errors
            status = 403 if isinstance(exc, JobForbidden) else 400
        else:
            confirmation = confirm_step(request, data, cleaned, estimate, permit)
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
                reason=data.reason,
                request=request,
            )
            return redirect("jobs:detail", job_id=job.pk)
    context = {
        "agents": runnable_agents(request.user),
        "discovery_methods": DISCOVERY_METHODS,
        "collectives": collectives(),
        "data": data,
        "errors": errors,
        "general_errors": {k: v for k, v in errors.items() if not k.startswith("inputs.")},
    }
    return render(request, "jobs/job_form.html", context, status=status)


def runnable_agents(user: Any) -> dict[str, AgentDDL]:
    """The agents the form offers, each with only the actions the operator may run."""
    allowed = runnable_actions(user)
    return {
        name: replace(ddl, actions={a: d for a, d in ddl.actions.items() if a in allowed[name]})
        for name, ddl in available_agents().items()
        if name in allowed
    }


def confirm_step(
    request: HttpRequest,
    data: JobFormData,
    inputs: dict[str, Any],
    estimate: TargetEstimate,
    permit: Permit,
) -> HttpResponse | None:
    """The confirmation page, unless the operator has just confirmed (``None`` then).

    Shows how many nodes, in which datacenters, and the effective filter when a grant's scope
    narrows it, before anything is sent. ``policy.confirmation_rules`` says when the count must
    be typed and a reason given (stricter for an action whose DDL says it changes the node).
    """
    changes_node = resolve_action(data.agent, data.action).changes_node
    rules = confirmation_rules(request.user, changes_node)
    errors: dict[str, str] = {}
    if request.POST.get("confirmed"):
        typed = request.POST.get("typed_count", "")
        if count_error := rules.typed_count_error(estimate.count, typed):
            errors["typed_count"] = count_error
        if reason_error := rules.reason_error(data.reason):
            errors["reason"] = reason_error
        try:
            check_reason(request.user, data.reason)  # its length, as submit_job checks it
        except JobRequestError as exc:
            errors.update(exc.errors)
        if not errors:
            return None
    resend = [
        (key, value)
        for key, values in request.POST.lists()
        if key not in {"csrfmiddlewaretoken", "confirmed", "typed_count", "reason"}
        for value in values
    ]
    context = {
        "data": data,
        "inputs": inputs,
        "estimate": estimate,
        "must_type": rules.must_type_count(estimate.count),
        "changes_node": changes_node,
        "errors": errors,
        "resend": resend,
        "permit": permit,
        "needs_approval": permit.needs_approval(estimate.count),
        "reason_required": rules.reason_required,
    }
    return render(request, "jobs/job_confirm.html", context, status=400 if errors else 200)


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
    if not may_cancel(request.user, job):
        raise PermissionDenied("only the job's requester or an admin may cancel it")
    cancel_job(job, request.user, request=request)
    return redirect("jobs:detail", job_id=job.pk)


@login_required
def job_detail(
    request: HttpRequest, job_id: int, error: str = "", status: int = 200
) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    approval = Approval.objects.filter(job=job).select_related("decided_by").first()
    context = {
        "job": job,
        "counts": job_counts(job),
        "approval": approval,
        "can_decide": approval is not None and may_approve(request.user, job),
        "can_cancel": may_cancel(request.user, job),
        "decision_error": error,
    }
    return render(request, "jobs/job_detail.html", context, status=status)


@login_required
@require_http_methods(["POST"])
def job_decide(request: HttpRequest, job_id: int) -> HttpResponse:
    """An approver approves or rejects a job waiting for a second person."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    comment = request.POST.get("comment", "")
    try:
        if request.POST.get("decision") == "approve":
            approvals.approve(job, request.user, comment, request=request)
        elif request.POST.get("decision") == "reject":
            approvals.reject(job, request.user, comment, request=request)
        else:
            raise approvals.ApprovalError("choose approve or reject")
    except approvals.ApprovalForbidden as exc:
        return job_detail(request, job_id, error=str(exc), status=403)
    except approvals.ApprovalError as exc:
        return job_detail(request, job_id, error=str(exc), status=400)
    return redirect("jobs:detail", job_id=job.pk)


@login_required
def approval_list(request: HttpRequest) -> HttpResponse:
    """Jobs waiting for a second person, for those who may approve them."""
    if not may_approve_jobs(request.user):
        return HttpResponseForbidden("none of your roles may approve jobs")
    approvals.expire_overdue()
    pending = (
        Approval.objects.filter(state=Approval.State.PENDING)
        .exclude(job__created_by=request.user)
        .select_related("job", "job__created_by")
        .order_by("expires_at")
    )
    return render(request, "jobs/approval_list.html", {"pending": pending})
