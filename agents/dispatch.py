"""The one dispatch pipeline: agent and action lookup, policy, DDL validation, call, audit.

Decoding, signature, destination, TTL and age, reply-to, duplicate and filter checks happen
before this, in the daemon (agents/daemon.py lists them in order), because a request that
fails them gets no reply at all (and no audit line); everything here always produces exactly
one Reply and, when an audit log is given, exactly one audit line. The daemon sends that Reply
unless the request is fire-and-forget (``reply_wanted`` false).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from agents.ddl import InputValidationError, UnknownAction
from agents.plugins.base import ActionContext, ActionError, Agent
from agents.policy import PolicyDecision
from agents.protocol.envelope import Reply, Request
from agents.protocol.status import Status

log = logging.getLogger(__name__)

# (request, the agent's action names) -> decision; the daemon binds node, roles and dir.
Authorizer = Callable[[Request, Collection[str]], PolicyDecision]


class Auditor(Protocol):
    """Anything that records an answered request (agents.audit.AuditLog)."""

    def record(
        self, identity: str, request: Request, reply: Reply, decision: PolicyDecision | None
    ) -> None: ...


def dispatch(
    request: Request,
    agents: Mapping[str, Agent],
    identity: str,
    make_context: Callable[[Request], ActionContext],
    *,
    authorize: Authorizer | None = None,
    audit: Auditor | None = None,
) -> Reply:
    """Run ``request`` against the loaded agents and return the Reply (never raises).

    Order: agent/action lookup (UNKNOWN_ACTION), policy (ABORTED with the deciding file and
    line), DDL validation (MISSING_DATA / INVALID_DATA), the handler (its ActionError status,
    or UNKNOWN_ERROR for any other exception: message to the caller, traceback to the log),
    then the audit line.
    """
    reply, decision = _run(request, agents, identity, make_context, authorize)
    if audit is not None:
        audit.record(identity, request, reply, decision)
    return reply


def _run(
    request: Request,
    agents: Mapping[str, Agent],
    identity: str,
    make_context: Callable[[Request], ActionContext],
    authorize: Authorizer | None,
) -> tuple[Reply, PolicyDecision | None]:
    def reply(status: Status, message: str, data: Mapping[str, Any] | None = None) -> Reply:
        return Reply.for_request(
            request, senderid=identity, statuscode=status, statusmsg=message, data=data
        )

    agent = agents.get(request.agent)
    if agent is None:
        return reply(Status.UNKNOWN_ACTION, f"unknown agent {request.agent!r} on {identity}"), None
    try:
        action = agent.ddl.action(request.action)
        handler = agent.actions()[request.action]
    except (UnknownAction, KeyError) as exc:
        return reply(Status.UNKNOWN_ACTION, str(exc).strip("'\"")), None
    if authorize is None:
        decision = PolicyDecision(True, "no policy configured")
    else:
        decision = authorize(request, agent.ddl.actions.keys())
    if not decision.allowed:
        log.info(
            "%s: request %s from %s for %s.%s %s",
            identity, request.requestid, request.callerid, request.agent, request.action,
            decision.reason,
        )  # fmt: skip
        return reply(Status.ABORTED, decision.reason), decision
    try:
        inputs = action.validate_inputs(request.data)
    except InputValidationError as exc:
        return reply(exc.status, f"invalid inputs: {exc}", {"errors": exc.errors}), decision
    data = action.output_defaults()
    try:
        result = handler(make_context(request), inputs)
    except ActionError as exc:
        data.update(exc.data)
        return reply(exc.status, str(exc), data if exc.data else None), decision
    except Exception as exc:
        log.exception(
            "%s.%s failed for request %s", request.agent, request.action, request.requestid
        )
        return reply(Status.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}"), decision
    data.update(result or {})
    return reply(Status.OK, "OK", data), decision
