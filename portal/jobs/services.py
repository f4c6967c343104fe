"""The doors into a job: submit one from a plan, stop one, re-run part of one.

The web form, the JSON API, the ``rpc`` command and the tests all call these, so a job is
planned, checked, stored and stopped the same way whichever door it came in by. The job's
states and their changes are ``portal.jobs.lifecycle``'s; the four-eyes steps are
``portal.jobs.approvals``'.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest

from agents.filters import Filter
from portal.audit.kinds import Kind
from portal.audit.services import record_event
from portal.jobs import approvals, lifecycle
from portal.jobs.catalog import available_agents
from portal.jobs.models import Job
from portal.jobs.options import ExecutionOptions
from portal.jobs.plans import JobPlan, plan_job
from portal.jobs.validation import check_reason

logger = logging.getLogger(__name__)


def submit_job(
    *,
    user: User,
    agent: str,
    action: str,
    inputs: dict[str, Any],
    filter: Filter,
    filter_text: str,
    source: str,
    options: Mapping[str, Any] | ExecutionOptions | None = None,
    dispatch: bool = True,
    reason: str = "",
    request: HttpRequest | None = None,
    plan: JobPlan | None = None,
) -> Job:
    """Plan, check and store a job, then queue it for a worker once it commits.

    Nothing is stored or queued when validation fails (``JobRequestError``), the policy
    refuses (``JobForbidden``), or the plan reaches no node. ``plan`` is the one the caller
    already made for this request (the confirmation page's); without it the job is planned
    here. The job's filter is the typed one AND the grant's scope. A job whose grant asks for
    a second person waits for approval instead of being queued. ``dispatch=False`` leaves the
    job queued for the caller to run itself (the ``rpc`` command).
    """
    if plan is None:
        plan = plan_job(
            user, agent, action, filter,
            filter_text=filter_text, inputs=inputs, options=options, source=source,
            request=request,
        )  # fmt: skip
    plan.require_targets(request)
    reason = check_reason(reason, plan.rules)
    return store_job(plan, reason=reason, dispatch=dispatch, request=request)


def store_job(
    plan: JobPlan, *, reason: str, dispatch: bool = True, request: HttpRequest | None = None
) -> Job:
    """Store a checked plan as a job (waiting for approval, or queued) with its audit event."""
    options = plan.options
    needs_approval = plan.needs_approval
    with transaction.atomic():
        job = Job.objects.create(
            created_by=plan.user,
            source=plan.source,
            agent=plan.agent,
            action=plan.action,
            inputs=plan.inputs,
            filter_text=plan.filter_text,
            typed_filter=plan.typed_filter.to_dict(),
            filter=plan.effective_filter.to_dict(),
            scope=plan.permit.scope_text,
            reason=reason,
            collective=options.target_collective,
            timeout=available_agents()[plan.agent].timeout,
            discovery_method=options.discovery,
            options=options.as_dict(),
            status=Job.Status.PENDING_APPROVAL if needs_approval else Job.Status.QUEUED,
        )
        job.roles.set(plan.user.groups.all())
        record_event(
            Kind.JOB_SUBMITTED,
            actor=plan.user,
            request=request,
            agent=plan.agent,
            action=plan.action,
            job_id=job.pk,
            summary=f"{plan.agent} {plan.action} on {plan.filter_text or 'every node'}",
            data={
                "source": plan.source,
                "inputs": plan.inputs,
                "filter": plan.filter_text,
                "effective_filter": plan.effective_filter.describe(),
                "scope": plan.permit.scope_text,
                "discovery": options.discovery,
                "options": options.as_dict(),
                "reason": reason,
                "planned_nodes": plan.estimate.count,
                "needs_approval": needs_approval,
            },
        )
        if needs_approval:
            approvals.request_approval(job, plan.approval_reason)
        elif dispatch:
            lifecycle.dispatch(job)
    logger.info(
        "job %s submitted by %s: %s.%s (%s)", job.pk, plan.user, plan.agent, plan.action, job.status
    )
    return job


def cancel_job(job: Job, user: User, request: HttpRequest | None = None) -> Job:
    """Stop a job: withdraw it while it waits for approval, cancel it once queued or running.

    The caller checks ``policy.may_cancel``. A finished job is returned unchanged.
    """
    if job.status == Job.Status.PENDING_APPROVAL:
        withdrawn = approvals.withdraw(job, user, request=request)
        if withdrawn is not None:
            return withdrawn
        job.refresh_from_db()  # decided meanwhile: cancel what it became
    return lifecycle.cancel(job, user, request=request)


def failed_nodes(job: Job) -> list[str]:
    """Identities whose reply to the job was not OK."""
    return list(
        job.replies.exclude(statuscode=0).order_by("identity").values_list("identity", flat=True)
    )
