"""Every change to a job goes through these functions.

The web form, the JSON API, the ``rpc`` command, the Celery task and the tests all call them, so
a job is validated, stored, run and reported the same way whichever door it came in by.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from agents.ddl import ActionDDL, AgentDDL, InputValidationError, UnknownAction, load_all
from agents.filters import Filter, FilterSyntaxError, parse_fact_term
from agents.filters.compound import MAX_COMPOUND_LENGTH
from agents.protocol import Reply
from portal.audit import kinds
from portal.audit.refusals import record_refusal
from portal.audit.services import record_event
from portal.celery import app as celery_app
from portal.inventory.models import Node
from portal.inventory.pg_regex import UnsupportedFilter
from portal.jobs.models import Job, NodeReply
from portal.jobs.options import ExecutionOptions, OptionsError
from portal.rbac.policy import Permit, authorize, confirmation_rules

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "jobs.run_job"
# How deep lists and objects may nest in a job's inputs and options. No DDL input takes more
# than a flat value; the bound keeps recursive code (JSON encoders, reprs, the audit's
# canonical form) far from Python's recursion limit whatever a client sends.
MAX_VALUE_DEPTH = 32


class JobRequestError(Exception):
    """A request that cannot become a job; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class JobForbidden(JobRequestError):
    """A well-formed request the operator's roles do not allow (HTTP 403, not 400)."""


@functools.cache
def available_agents() -> dict[str, AgentDDL]:
    """The agents the portal knows, by name, from the DDLs shipped with ``agents/``.

    Read once per process: the DDLs ship with the code and change only with a deploy.
    """
    return load_all()


def build_filter(
    compound: str = "",
    *,
    facts: Sequence[str] = (),
    classes: Sequence[str] = (),
    identities: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> Filter:
    """A filter from ``mco``-style parts; raises ``JobRequestError`` on the field at fault."""
    parts_text = (compound, *facts, *classes, *identities, *agents)
    if any("\x00" in part for part in parts_text):
        # PostgreSQL cannot store or compare text with NUL in it: refused here, not a 500.
        raise JobRequestError({"filter": "a filter cannot contain a NUL character"})
    if any(_has_lone_surrogate(part) for part in parts_text):
        raise JobRequestError({"filter": LONE_SURROGATE})
    try:
        fact_terms = [parse_fact_term(term) for term in facts]
    except FilterSyntaxError as exc:
        raise JobRequestError({"filter": f"fact filter: {exc}"}) from exc
    parts = Filter(
        fact=fact_terms,
        cf_class=list(classes),
        agent=list(agents),
        identity=list(identities),
        compound=compound.strip() or None,
    )
    try:
        # from_dict is the validation the nodes apply to what they receive.
        return Filter.from_dict(parts.to_dict())
    except FilterSyntaxError as exc:
        raise JobRequestError({"filter": str(exc)}) from exc


def parse_filter_text(text: str) -> Filter:
    """The compound expression an operator typed; an empty text matches every node."""
    return build_filter(text)


def resolve_action(agent: str, action: str) -> ActionDDL:
    """The DDL of ``agent.action``; raises ``JobRequestError`` naming what is unknown."""
    try:
        agent_ddl = available_agents()[agent]
    except KeyError:
        known = ", ".join(sorted(available_agents()))
        raise JobRequestError({"agent": f"unknown agent {agent!r}; known: {known}"}) from None
    try:
        return agent_ddl.action(action)
    except UnknownAction:
        known = ", ".join(sorted(agent_ddl.actions))
        raise JobRequestError(
            {"action": f"agent {agent!r} has no action {action!r}; it has: {known}"}
        ) from None


LONE_SURROGATE = (
    "contains a lone surrogate (a \\ud800-\\udfff escape or undecodable bytes), which is not"
    " text; send valid UTF-8"
)


def _has_lone_surrogate(text: str) -> bool:
    """True for text no UTF-8 store or JSON answer can hold (SQLite and the renderer raise)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _value_problem(value: Any) -> str | None:
    """Why a request value cannot be stored and sent as JSON, or ``None`` when it can.

    Walks lists and objects with an explicit stack, not recursion, so depth itself is safe.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "cannot contain a NUL character"
            if _has_lone_surrogate(item):
                return LONE_SURROGATE
        elif isinstance(item, float) and not math.isfinite(item):
            return "must be a finite number (JSON has no infinity or NaN)"
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_VALUE_DEPTH:
                return f"is nested deeper than {MAX_VALUE_DEPTH} levels"
            if isinstance(item, Mapping):
                stack.extend((key, depth + 1) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def check_values(field: str, values: Mapping[str, Any]) -> None:
    """Refuse values no store or node can take: NUL, lone surrogates, infinities, deep nesting.

    Raises ``JobRequestError`` naming ``<field>.<name>`` (or ``<field>`` when the name itself
    is at fault), before anything echoes the names or stores the values.
    """
    errors: dict[str, str] = {}
    for name, value in values.items():
        name_problem = _value_problem(name)
        if name_problem is not None:
            errors[field] = f"a name {name_problem}"
            continue
        problem = _value_problem(value)
        if problem is not None:
            errors[f"{field}.{name}"] = problem
    if errors:
        raise JobRequestError(errors)


def validate_inputs(action_ddl: ActionDDL, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs cleaned by the DDL (defaults applied, types coerced), or ``JobRequestError``."""
    try:
        return action_ddl.validate_inputs(inputs)
    except InputValidationError as exc:
        raise JobRequestError({f"inputs.{name}": msg for name, msg in exc.errors.items()}) from exc


@dataclass(frozen=True)
class TargetEstimate:
    """Who a job would reach, per the inventory, for the operator to confirm before sending."""

    count: int
    datacenters: dict[str, int]


def check_job_request(
    agent: str,
    action: str,
    inputs: dict[str, Any],
    options: Mapping[str, Any] | ExecutionOptions | None,
) -> tuple[dict[str, Any], ExecutionOptions]:
    """The cleaned inputs and options of a request, storing nothing; raises JobRequestError."""
    action_ddl = resolve_action(agent, action)
    if isinstance(inputs, Mapping):  # anything else is the DDL's "inputs must be an object"
        check_values("inputs", inputs)
    if isinstance(options, Mapping):
        check_values("options", options)
    cleaned = validate_inputs(action_ddl, inputs)
    if isinstance(options, ExecutionOptions):
        return cleaned, options
    try:
        return cleaned, ExecutionOptions.parse(options)
    except OptionsError as exc:
        raise JobRequestError(exc.errors) from exc


def authorize_request(
    user: AbstractBaseUser,
    agent: str,
    action: str,
    job_filter: Filter,
    *,
    source: str = Job.Source.WEB,
    filter_text: str | None = None,
    request: HttpRequest | None = None,
) -> Permit:
    """The policy's permit for this request; ``JobForbidden`` saying why when it is refused.

    Unknown agents and actions are reported as such first (a 400, not a 403). A refusal is
    recorded (``job.refused``, committed on its own) before it is raised: call this outside
    any transaction. ``source`` defaults to the web form, the one caller besides submit_job.
    """
    resolve_action(agent, action)
    try:
        permit = authorize(user, agent, action, job_filter)
    except FilterSyntaxError as exc:
        # The filter parsed on its own (the caller parsed it); ANDed with the grant's scope it
        # no longer does, in practice because the sum passes the nodes' length limit.
        raise JobRequestError(
            {"filter": _scoped_filter_problem(user, agent, action, job_filter, exc)}
        ) from exc
    if not permit.allowed:
        errors = {"action": permit.reason}
        record_refusal(
            user=user,
            source=source,
            agent=agent,
            action=action,
            job_filter=job_filter,
            filter_text=filter_text,
            reasons=errors,
            request=request,
        )
        raise JobForbidden(errors)
    return permit


def _scoped_filter_problem(
    user: AbstractBaseUser, agent: str, action: str, job_filter: Filter, exc: FilterSyntaxError
) -> str:
    """What to tell an operator whose filter is refused once their scope is ANDed to it."""
    try:
        # The scope alone: the policy ANDs it as "(<filter>) and (<scope>)".
        scope = authorize(user, agent, action, Filter()).scope_text
    except FilterSyntaxError:
        scope = ""
    if scope:
        length = len(f"({job_filter.describe()}) and ({scope})")
        if length > MAX_COMPOUND_LENGTH:
            return (
                f"the filter with your scope is {length} characters, over"
                f" {MAX_COMPOUND_LENGTH}; shorten the filter"
            )
    return f"the filter with your scope cannot be used ({exc}); simplify the filter"


def current_permit(job: Job) -> Permit:
    """The policy's answer for a stored job now: its requester, action and filter as sent.

    Asked again before a job runs, between its batches and when it is approved, so a grant
    revoked or narrowed since submission applies.
    """
    return authorize(job.created_by, job.agent, job.action, Filter.from_dict(job.filter))


def check_reason(user: AbstractBaseUser, reason: str, changes_node: bool = False) -> str:
    """The reason or ticket, stripped; ``JobRequestError`` when none is given and the policy
    asks for one (the role does, or the action changes the nodes)."""
    reason = reason.strip()
    if "\x00" in reason:
        raise JobRequestError({"reason": "cannot contain a NUL character"})
    if _has_lone_surrogate(reason):
        raise JobRequestError({"reason": LONE_SURROGATE})
    if missing := confirmation_rules(user, changes_node).reason_error(reason):
        raise JobRequestError({"reason": missing})
    if len(reason) > 500:
        raise JobRequestError({"reason": "at most 500 characters"})
    return reason


def estimate_targets(job_filter: Filter, options: ExecutionOptions) -> TargetEstimate:
    """How many fresh inventory nodes the filter (and the limit) would reach, by datacenter.

    One query. A broadcast discovery may find a few more or fewer: the inventory is what the
    nodes last registered.
    """
    try:
        rows = dict(
            Node.objects.matching(job_filter)
            .fresh()
            .of_collective(options.target_collective)
            .values_list("identity", "facts__datacenter")
        )
    except UnsupportedFilter as exc:
        raise JobRequestError({"filter": str(exc)}) from exc
    chosen = options.choose(list(rows))
    datacenters = Counter(str(rows[identity] or "unknown") for identity in chosen)
    return TargetEstimate(len(chosen), dict(sorted(datacenters.items())))


def submit_job(
    *,
    user: AbstractBaseUser,
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
) -> Job:
    """Validate, authorize and store a job, then queue it for a worker once it commits.

    Nothing is stored or queued when validation fails (``JobRequestError``) or the policy
    refuses (``JobForbidden``). The job's filter is the typed one AND the grant's scope. A job
    whose grant asks for a second person waits for approval instead of being queued.
    ``dispatch=False`` leaves the job queued for the caller to run itself (the ``rpc`` command).
    """
    permit = authorize_request(
        user, agent, action, filter, source=source, filter_text=filter_text, request=request
    )
    cleaned, options = check_job_request(agent, action, inputs, options)
    reason = check_reason(user, reason, resolve_action(agent, action).changes_node)
    approval_count = None
    if any(grant.approval != "never" for grant in permit.grants):
        approval_count = estimate_targets(permit.effective_filter, options).count
    needs_approval = approval_count is not None and permit.needs_approval(approval_count)
    with transaction.atomic():
        job = Job.objects.create(
            created_by=user,
            source=source,
            agent=agent,
            action=action,
            inputs=cleaned,
            filter_text=filter_text,
            filter=permit.effective_filter.to_dict(),
            scope=permit.scope_text,
            reason=reason,
            collective=options.target_collective,
            timeout=available_agents()[agent].timeout,
            discovery_method=options.discovery,
            options=options.as_dict(),
            status=Job.Status.PENDING_APPROVAL if needs_approval else Job.Status.QUEUED,
        )
        job.roles.set(user.groups.all())
        record_event(
            "job.submitted",
            actor=user,
            request=request,
            agent=agent,
            action=action,
            job_id=job.pk,
            summary=f"{agent} {action} on {filter_text or 'every node'}",
            data={
                "source": source,
                "inputs": cleaned,
                "filter": filter_text,
                "effective_filter": permit.effective_filter.describe(),
                "scope": permit.scope_text,
                "discovery": options.discovery,
                "options": options.as_dict(),
                "reason": reason,
                "needs_approval": needs_approval,
            },
        )
        if needs_approval:
            from portal.jobs.approvals import request_approval

            request_approval(job, permit.approval_reason(approval_count or 0))
        elif dispatch:
            dispatch_job(job)
    logger.info("job %s submitted by %s: %s.%s (%s)", job.pk, user, agent, action, job.status)
    return job


def dispatch_job(job: Job) -> None:
    """Queue the job for a worker once the current transaction commits."""
    # By name: the task module imports this one.
    transaction.on_commit(lambda: celery_app.send_task(RUN_JOB_TASK, args=[job.pk]))


def start_job(job_id: int) -> Job | None:
    """Claim a queued job for running; ``None`` if it was already claimed.

    RPC over a broker is at-most-once: a task re-delivered after a worker crash must not
    publish the request again, so only the first claim of a queued job succeeds.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, runner=this_runner(), heartbeat_at=now
    )
    if not claimed:
        return None
    return Job.objects.get(pk=job_id)


def record_discovery(job: Job, discovered: Iterable[str], targeted: Iterable[str]) -> None:
    """Store who discovery found and who the request goes to (fewer with a limit)."""
    job.discovered = sorted(discovered)
    job.targeted = sorted(targeted)
    # "expected" is who the request is sent to: the limited choice, not all discovered.
    job.discovered_count = len(job.targeted)
    job.discovered_at = timezone.now()
    job.save(update_fields=["discovered", "targeted", "discovered_count", "discovered_at"])


def record_request(job: Job, requestid: str) -> None:
    """Remember the (first) request id sent for the job, for tracing on the nodes' audit logs."""
    if not job.requestid:
        job.requestid = requestid
        job.save(update_fields=["requestid"])


def record_dropped(job: Job, count: int) -> None:
    """Count replies refused and not stored (bad signature, a node answering twice)."""
    if count:
        Job.objects.filter(pk=job.pk).update(dropped_count=F("dropped_count") + count)
        job.refresh_from_db(fields=["dropped_count"])


def cancel_job(job: Job, user: AbstractBaseUser, request: HttpRequest | None = None) -> Job:
    """Ask a job to stop: a queued one is cancelled at once; a running one stops sending
    batches and waiting at its next check (within a second), keeping its replies.

    Recorded as ``job.cancel_requested`` (who, and the status it was asked in) with the change;
    a cancel of a finished job changes nothing and records nothing."""
    with transaction.atomic():
        asked_in = job.status
        before_start = bool(
            Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
                status=Job.Status.CANCELLED, cancel_requested=True
            )
        )
        if not before_start and job.is_finished:
            return job
        if not before_start:
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        record_event(
            kinds.JOB_CANCEL_REQUESTED,
            actor=user,
            request=request,
            agent=job.agent,
            action=job.action,
            job_id=job.pk,
            outcome="cancelled" if before_start else "requested",
            summary=f"cancel of job {job.pk} "
            + ("before it started" if before_start else "requested"),
            data={"status": asked_in},
        )
        if before_start:
            job.refresh_from_db()
            finish_job(job, Job.Status.CANCELLED, f"cancelled by {user} before it started")
    logger.info("job %s: cancel requested by %s", job.pk, user)
    job.refresh_from_db()
    return job


def cancel_requested(job: Job) -> bool:
    """True once someone asked the running job to stop (one indexed query)."""
    return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


def record_replies(
    job: Job, replies: Sequence[Reply], verified: Collection[str] = ()
) -> list[NodeReply]:
    """Store a batch of replies with one INSERT and one UPDATE of the counters.

    Returns the rows stored. A node that already has a reply for this job (a node answering
    twice) is dropped and logged, never stored or counted twice.
    """
    if not replies:
        return []
    now = timezone.now()
    with transaction.atomic():
        identities = [reply.senderid for reply in replies]
        known = set(
            NodeReply.objects.filter(job=job, identity__in=identities).values_list(
                "identity", flat=True
            )
        )
        rows: dict[str, NodeReply] = {}
        for reply in replies:
            if reply.senderid in known or reply.senderid in rows:
                logger.warning("job %s: dropped a repeated reply from %s", job.pk, reply.senderid)
                continue
            rows[reply.senderid] = NodeReply(
                job=job,
                identity=reply.senderid,
                statuscode=reply.statuscode,
                statusmsg=reply.statusmsg,
                data=reply.data,
                received_at=now,
                verified=reply.senderid in verified,
            )
        if not rows:
            return []
        NodeReply.objects.bulk_create(rows.values())
        ok = sum(1 for row in rows.values() if row.ok)
        Job.objects.filter(pk=job.pk).update(
            replied_count=F("replied_count") + len(rows),
            ok_count=F("ok_count") + ok,
            failed_count=F("failed_count") + len(rows) - ok,
            last_reply_at=now,
        )
        Job.objects.filter(pk=job.pk, first_reply_at__isnull=True).update(first_reply_at=now)
    job.refresh_from_db(
        fields=["replied_count", "ok_count", "failed_count", "first_reply_at", "last_reply_at"]
    )
    return list(rows.values())


def finish_job(job: Job, status: str, error: str = "") -> Job:
    """Close the job: who did not answer, the final status and, if any, why it failed."""
    replied = set(job.replies.values_list("identity", flat=True))
    job.no_response = sorted(set(job.targeted) - replied)
    job.status = status
    job.error = error
    job.finished_at = timezone.now()
    job.save(update_fields=["no_response", "status", "error", "finished_at"])
    counts = job_counts(job)
    record_event(
        "job.finished",
        actor=job.created_by,
        agent=job.agent,
        action=job.action,
        job_id=job.pk,
        outcome=status,
        nodes=job.targeted,
        summary=f"{job.agent} {job.action}: {status}" + (f" ({error})" if error else ""),
        data={
            "counts": counts,
            "error": error,
            "duration": (
                (job.finished_at - job.started_at).total_seconds() if job.started_at else None
            ),
        },
    )
    logger.info("job %s %s: %s", job.pk, status, error or counts)
    return job


def this_runner() -> str:
    """This process, as a job's ``runner``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(job: Job) -> None:
    """Show that the job's runner is alive (one UPDATE; callers do it every few seconds)."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())


def interrupt_orphaned_jobs(stale_after: float) -> list[int]:
    """Mark running jobs whose runner is gone interrupted; returns their ids.

    A runner on this host whose process no longer exists is gone at once; any runner is gone
    once its heartbeat is older than ``stale_after`` seconds. Replies already stored stay.
    """
    host = socket.gethostname()
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    orphaned = []
    for job in Job.objects.filter(status=Job.Status.RUNNING):
        runner_host, _, pid = job.runner.rpartition(":")
        dead_here = runner_host == host and pid.isdigit() and not _process_alive(int(pid))
        silent = job.heartbeat_at is None or job.heartbeat_at < cutoff
        if dead_here or silent:
            why = "its process ended" if dead_here else f"no heartbeat for {stale_after:g} s"
            finish_job(
                job, Job.Status.INTERRUPTED, f"interrupted: the runner {job.runner} stopped ({why})"
            )
            orphaned.append(job.pk)
    return orphaned


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupt_unfinished_jobs(reason: str) -> int:
    """Mark every queued or running job interrupted, keeping the replies it already has.

    Called when the process that would finish them is gone (a worker or demo restart).
    """
    jobs = list(Job.objects.unfinished())
    for job in jobs:
        finish_job(job, Job.Status.INTERRUPTED, reason)
    return len(jobs)


def failed_nodes(job: Job) -> list[str]:
    """Identities whose reply to the job was not OK."""
    return list(
        job.replies.exclude(statuscode=0).order_by("identity").values_list("identity", flat=True)
    )


def job_counts(job: Job) -> dict[str, int]:
    """The counters shown everywhere: expected, replied, ok, failed, no response."""
    return {
        "expected": job.discovered_count,
        "replied": job.replied_count,
        "ok": job.ok_count,
        "failed": job.failed_count,
        "no_response": len(job.no_response)
        if job.is_finished
        else max(job.discovered_count - job.replied_count, 0),
    }


def job_summary(job: Job) -> dict[str, Any]:
    """The job without its replies, as the API, the CLI and the live stream show it."""
    return {
        "id": job.pk,
        "agent": job.agent,
        "action": job.action,
        "inputs": job.inputs,
        "filter": job.filter_text,
        "status": job.status,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "discovery_method": job.discovery_method,
        "options": job.options,
        "dropped": job.dropped_count,
        "finished": job.is_finished,
        "discovered": job.discovered_count,
        "counts": job_counts(job),
        "no_response": job.no_response,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def job_snapshot(job: Job) -> dict[str, Any]:
    """The job with every reply stored so far."""
    summary = job_summary(job)
    summary["replies"] = [reply.as_dict() for reply in job.replies.all()]
    return summary
