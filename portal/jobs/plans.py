"""A job's plan: what would run, where, under which rules, made once per request.

The form's live count, the confirmation page, the API, the ``rpc`` command and the submit all
read one ``JobPlan``: the operator's filter ANDed with their scope, in the chosen collective,
cut to the limit, counted in the inventory; the policy's permit; the confirmation rules. So
the number the operator confirms is the number the job is sent to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count
from django.http import HttpRequest

from agents.ddl import ActionDDL
from agents.filters import Filter, FilterSyntaxError
from agents.filters.compound import MAX_COMPOUND_LENGTH
from agents.filters.terms import MISSING, lookup_fact
from portal.audit.refusals import record_refusal
from portal.inventory.models import Node
from portal.inventory.pg_regex import UnsupportedFilter
from portal.inventory.preview import filter_fact_names
from portal.jobs.catalog import JobForbidden, JobRequestError, resolve_action
from portal.jobs.models import Job
from portal.jobs.options import ExecutionOptions, OptionsError
from portal.jobs.validation import check_values, validate_inputs
from portal.rbac.policy import ConfirmationRules, Permit, authorize, confirmation_rules


@dataclass(frozen=True)
class TargetEstimate:
    """Who a job would reach, per the inventory, for the operator to confirm before sending.

    ``count`` nodes are targeted (fresh nodes of the collective inside the scope, cut to the
    limit), ``matched`` before the limit; ``typed`` is what the operator's filter alone
    matches in the collective (more than ``matched`` when the scope leaves some out, ``None``
    when no scope applies); ``stale`` matching nodes have not registered lately and are left
    out.
    """

    count: int
    datacenters: dict[str, int]
    matched: int = 0
    typed: int | None = None
    stale: int = 0


@dataclass(frozen=True)
class JobPlan:
    """A request checked and counted, ready to confirm and to store."""

    user: User
    agent: str
    action: str
    action_ddl: ActionDDL
    typed_filter: Filter
    filter_text: str
    inputs: dict[str, Any]
    options: ExecutionOptions
    permit: Permit
    estimate: TargetEstimate
    rules: ConfirmationRules
    source: str

    @property
    def effective_filter(self) -> Filter:
        return self.permit.effective_filter

    @property
    def needs_approval(self) -> bool:
        return self.permit.needs_approval(self.estimate.count)

    @property
    def approval_reason(self) -> str:
        return self.permit.approval_reason(self.estimate.count)

    @property
    def must_type_count(self) -> bool:
        return self.rules.must_type_count(self.estimate.count)

    def target_problem(self) -> tuple[str, bool] | None:
        """Why this plan reaches no node, and whether it is because of the scope; ``None``
        when it reaches some. A broadcast job whose only matches are stale nodes may still go
        (they may answer); an inventory job may not."""
        estimate = self.estimate
        if estimate.count:
            return None
        if estimate.typed:
            plural = "s" if estimate.typed != 1 else ""
            return (
                f"your filter matches {estimate.typed} node{plural}, none inside your scope"
                f" ({self.permit.scope_text}); nothing would be sent",
                True,
            )
        if estimate.stale and self.options.discovery != "inventory":
            return None
        collective = self.options.target_collective
        where = f" in collective {collective}" if self.options.collective else ""
        stale = (
            f" ({estimate.stale} stale node{'s' if estimate.stale != 1 else ''} left out:"
            " they have not registered lately)"
            if estimate.stale
            else ""
        )
        return f"no node matches this filter{where}{stale}; nothing would be sent", False

    def require_targets(self, request: HttpRequest | None = None) -> None:
        """Refuse a plan that reaches no node, saying why: ``JobForbidden`` (recorded as a
        refusal) when only nodes outside the operator's scope match, else ``JobRequestError``."""
        problem = self.target_problem()
        if problem is None:
            return
        message, outside_scope = problem
        errors = {"filter": message}
        if not outside_scope:
            raise JobRequestError(errors)
        record_refusal(
            user=self.user,
            source=self.source,
            agent=self.agent,
            action=self.action,
            job_filter=self.typed_filter,
            filter_text=self.filter_text,
            reasons=errors,
            request=request,
        )
        raise JobForbidden(errors)

    def describe(self) -> dict[str, Any]:
        """The plan as the form's live count and the API's dry run show it."""
        estimate = self.estimate
        return {
            "agent": self.agent,
            "action": self.action,
            "filter": self.filter_text,
            "effective_filter": self.effective_filter.describe(),
            "scope": self.permit.scope_text,
            "collective": self.options.target_collective,
            "limit": self.options.limit,
            "count": estimate.count,
            "matched": estimate.matched,
            "typed": estimate.typed,
            "stale": estimate.stale,
            "datacenters": estimate.datacenters,
            "needs_approval": self.needs_approval,
            "must_type_count": self.must_type_count,
            "reason_required": self.rules.reason_required,
            "changes_node": self.action_ddl.changes_node,
            "problem": problem[0] if (problem := self.target_problem()) else None,
        }


def plan_job(
    user: User,
    agent: str,
    action: str,
    job_filter: Filter,
    *,
    filter_text: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | ExecutionOptions | None = None,
    source: str = Job.Source.WEB,
    request: HttpRequest | None = None,
    record_refusals: bool = True,
) -> JobPlan:
    """Check a request and count its targets, storing nothing.

    Raises ``JobRequestError`` (a 400: unknown action, bad inputs or options, a filter that
    does not fit) or ``JobForbidden`` (a 403: the policy says no, recorded as ``job.refused``
    unless ``record_refusals`` is off, as for the form's live count). ``inputs=None`` skips
    the inputs' validation (the live count, before the operator filled them).
    ``filter_text`` is the filter as the operator typed it (default: ``job_filter``'s text).
    """
    action_ddl = resolve_action(agent, action)
    permit = _permit(user, agent, action, job_filter, source, filter_text, request, record_refusals)
    cleaned: dict[str, Any] = {}
    if inputs is not None:
        if isinstance(inputs, Mapping):  # anything else is the DDL's "inputs must be an object"
            check_values("inputs", inputs)
        cleaned = validate_inputs(action_ddl, inputs)
    if isinstance(options, Mapping):
        check_values("options", options)
    if not isinstance(options, ExecutionOptions):
        try:
            options = ExecutionOptions.parse(options)
        except OptionsError as exc:
            raise JobRequestError(exc.errors) from exc
    estimate = estimate_targets(permit, options, job_filter)
    return JobPlan(
        user=user,
        agent=agent,
        action=action,
        action_ddl=action_ddl,
        typed_filter=job_filter,
        filter_text=job_filter.describe() if filter_text is None else filter_text,
        inputs=cleaned,
        options=options,
        permit=permit,
        estimate=estimate,
        rules=confirmation_rules(user, action_ddl.changes_node),
        source=source,
    )


def _permit(
    user: User,
    agent: str,
    action: str,
    job_filter: Filter,
    source: str,
    filter_text: str | None,
    request: HttpRequest | None,
    record_refusals: bool,
) -> Permit:
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
        if record_refusals:
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
    user: User, agent: str, action: str, job_filter: Filter, exc: FilterSyntaxError
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


def estimate_targets(
    permit: Permit, options: ExecutionOptions, typed_filter: Filter | None = None
) -> TargetEstimate:
    """How many fresh inventory nodes the plan would reach (scope, collective, limit), by
    datacenter; with the typed filter's own count when a scope narrowed it.

    Two queries, three with a scope. A broadcast discovery may find a few more or fewer: the
    inventory is what the nodes last registered.
    """
    try:
        matched = Node.objects.targeted_by(permit.effective_filter, options.target_collective)
        if options.limit:
            # The seeded choice needs the identities; the counts follow from the chosen few.
            rows = dict(matched.fresh().values_list("identity", "facts__datacenter"))
            chosen = options.choose(list(rows))
            datacenters = Counter(str(rows[identity] or "unknown") for identity in chosen)
            count, matching = len(chosen), len(rows)
        else:
            # Counted by the database, grouped by datacenter: no identity leaves it.
            grouped = (
                matched.fresh()
                .values("facts__datacenter")
                .annotate(n=Count("pk"))
                .order_by()
                .values_list("facts__datacenter", "n")
            )
            datacenters = Counter()
            for datacenter, n in grouped:
                datacenters[str(datacenter or "unknown")] += n
            count = matching = sum(datacenters.values())
        stale = matched.stale().count()
        typed = None
        if permit.scopes and typed_filter is not None:
            typed = (
                Node.objects.targeted_by(typed_filter, options.target_collective).fresh().count()
            )
    except UnsupportedFilter as exc:
        raise JobRequestError({"filter": str(exc)}) from exc
    return TargetEstimate(
        count=count,
        datacenters=dict(sorted(datacenters.items())),
        matched=matching,
        typed=typed,
        stale=stale,
    )


def current_permit(job: Job) -> Permit:
    """The policy's answer for a stored job now: its requester, action and typed filter.

    Asked again before a job runs, between its batches and when it is approved, so a grant
    revoked or narrowed since submission applies. The typed filter, not the sent one: the
    scope is the policy's to AND, once.
    """
    typed = job.typed_filter or job.filter
    return authorize(job.created_by, job.agent, job.action, Filter.from_dict(typed))


def planned_nodes(plan: JobPlan, limit: int = 5) -> list[dict[str, Any]]:
    """The first ``limit`` nodes (by identity) the plan's filter reaches in its collective,
    with the facts the filter names, for the form's live count (one query)."""
    names = filter_fact_names(plan.typed_filter)
    nodes = (
        Node.objects.targeted_by(plan.effective_filter, plan.options.target_collective)
        .fresh()
        .order_by("identity")
        .only("identity", "facts", "last_seen")[:limit]
    )
    return [
        {
            "identity": node.identity,
            "stale": False,
            "facts": {
                name: value
                for name in names
                if (value := lookup_fact(node.facts, name)) is not MISSING
            },
        }
        for node in nodes
    ]
