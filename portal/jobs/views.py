"""Pages for operators: the job list, the job form and the live job page."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from agents.ddl import AgentDDL
from portal.jobs import approvals
from portal.jobs.catalog import JobForbidden, JobRequestError, available_agents
from portal.jobs.forms import JobFormData
from portal.jobs.listing import (
    PAGE_COLUMNS,
    STATUSES,
    JobListQuery,
    ListFilterError,
    action_choices,
    form_values,
    keyset_page,
    matching_jobs,
    role_choices,
)
from portal.jobs.models import Approval, Job
from portal.jobs.options import DISCOVERY_METHODS, collectives
from portal.jobs.plans import JobPlan, plan_job
from portal.jobs.presenters import job_counts
from portal.jobs.services import cancel_job, failed_nodes, submit_job
from portal.jobs.validation import check_reason, parse_filter_text
from portal.rbac.policy import (
    CANCEL_REFUSED,
    may_approve,
    may_approve_jobs,
    may_cancel,
    runnable_actions,
)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    """The jobs the person may see, newest first, filtered and paged by keyset
    (``portal.jobs.listing``: one query per page, no count); bad filters are a 400 that
    says which and why."""
    context: dict[str, Any] = {
        "form": form_values(request.GET),
        "statuses": STATUSES,
        "roles": role_choices(request.user),
        "agents": sorted(available_agents()),
        "actions": action_choices(),
        "errors": {},
    }
    try:
        query = JobListQuery.from_params(request.GET, request.user)
    except ListFilterError as exc:
        context["errors"] = exc.errors
        return render(request, "jobs/job_list.html", context, status=400)
    jobs = matching_jobs(request.user, query).select_related("created_by").only(*PAGE_COLUMNS)
    page = keyset_page(jobs, query)
    cursor = query.after is not None or query.before is not None
    context.update(
        query=query,
        jobs=page.jobs,
        newer_url=query.query_string(before=page.newer) if page.newer is not None else None,
        older_url=query.query_string(after=page.older) if page.older is not None else None,
        newest_url=query.query_string() if cursor else None,
    )
    return render(request, "jobs/job_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    """GET shows the form; POST plans the job once, shows the confirmation for that plan, and
    submits that same plan once confirmed (or shows each field's error)."""
    data = prefill(request)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        data = JobFormData.from_post(request.POST)
        try:
            plan = plan_job(
                request.user, data.agent, data.action, parse_filter_text(data.filter_text),
                filter_text=data.filter_text, inputs=data.inputs, options=data.options,
                source=Job.Source.WEB, request=request,
            )  # fmt: skip
            plan.require_targets(request)
        except JobRequestError as exc:
            errors = exc.errors
            status = 403 if isinstance(exc, JobForbidden) else 400
        else:
            confirmation = confirm_step(request, data, plan)
            if confirmation is not None:
                return confirmation
            job = submit_job(
                user=request.user,
                agent=data.agent,
                action=data.action,
                inputs=data.inputs,
                filter=plan.typed_filter,
                filter_text=data.filter_text,
                source=Job.Source.WEB,
                reason=data.reason,
                request=request,
                plan=plan,
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


def confirm_step(request: HttpRequest, data: JobFormData, plan: JobPlan) -> HttpResponse | None:
    """The confirmation page for ``plan``, unless the operator has just confirmed it (``None``).

    Shows how many nodes, in which datacenters, and the effective filter when a grant's scope
    narrows it, before anything is sent. ``plan.rules`` says when the count must be typed and
    a reason given (stricter for an action whose DDL says it changes the node). The page
    carries the count it showed: if the plan counts otherwise when the operator confirms (a
    node registered, a grant changed), the page is shown again with the new count.
    """
    errors: dict[str, str] = {}
    count = plan.estimate.count
    if request.POST.get("confirmed"):
        shown = request.POST.get("planned_count", "")
        if shown != str(count):
            errors["planned_count"] = (
                f"the target changed since you confirmed: {count} nodes now, {shown or '?'}"
                " then; check and confirm again"
            )
        typed = request.POST.get("typed_count", "")
        if not errors and (count_error := plan.rules.typed_count_error(count, typed)):
            errors["typed_count"] = count_error
        try:
            check_reason(data.reason, plan.rules)
        except JobRequestError as exc:
            errors.update(exc.errors)
        if not errors:
            return None
    resend = [
        (key, value)
        for key, values in request.POST.lists()
        if key not in {"csrfmiddlewaretoken", "confirmed", "typed_count", "reason", "planned_count"}
        for value in values
    ]
    context = {
        "data": data,
        "plan": plan,
        "inputs": plan.inputs,
        "estimate": plan.estimate,
        "must_type": plan.must_type_count,
        "changes_node": plan.action_ddl.changes_node,
        "errors": errors,
        "resend": resend,
        "permit": plan.permit,
        "needs_approval": plan.needs_approval,
        "reason_required": plan.rules.reason_required,
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
@require_http_methods(["GET", "POST"])
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET (or a POST without ``confirmed``) asks to confirm, saying what stopping does to
    this job now; a confirmed POST cancels it, or withdraws it while it waits for approval."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    if not may_cancel(request.user, job):
        raise PermissionDenied(CANCEL_REFUSED)
    if job.is_finished:
        return job_detail(request, job_id, error=f"job {job.pk} has already ended", status=409)
    if request.method == "POST" and request.POST.get("confirmed"):
        stopped = cancel_job(job, request.user, request=request)
        if stopped.status == Job.Status.WITHDRAWN:
            messages.success(request, f"Job {job.pk} withdrawn: it will not be sent.")
        elif stopped.is_finished:
            messages.success(request, f"Job {job.pk} cancelled before it started.")
        else:
            messages.info(request, f"Job {job.pk} is stopping: no further batch is sent.")
        return redirect("jobs:detail", job_id=job.pk)
    context = {"job": job, "counts": job_counts(job)}
    return render(request, "jobs/job_cancel.html", context)


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
