"""The one dispatch pipeline: agent, action, DDL validation, call, Reply.

Filter, TTL and duplicate checks happen before this, in the daemon, because a request that
fails them gets no reply at all; everything here always produces exactly one Reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from agents.ddl import InputValidationError, UnknownAction
from agents.plugins.base import ActionContext, ActionError, Agent
from agents.protocol.envelope import Reply, Request
from agents.protocol.status import Status

log = logging.getLogger(__name__)


def dispatch(
    request: Request,
    agents: Mapping[str, Agent],
    identity: str,
    make_context: Callable[[Request], ActionContext],
) -> Reply:
    """Run ``request`` against the loaded agents and return the Reply (never raises).

    Status codes: UNKNOWN_ACTION for an unknown agent or action, MISSING_DATA or
    INVALID_DATA from the DDL, the ActionError's status, UNKNOWN_ERROR for any other
    exception (its message goes back to the caller; the traceback stays in the node log).
    """

    def reply(status: Status, message: str, data: Mapping[str, object] | None = None) -> Reply:
        return Reply.for_request(
            request, senderid=identity, statuscode=status, statusmsg=message, data=data
        )

    agent = agents.get(request.agent)
    if agent is None:
        return reply(Status.UNKNOWN_ACTION, f"unknown agent {request.agent!r} on {identity}")
    try:
        action = agent.ddl.action(request.action)
        handler = agent.actions()[request.action]
    except (UnknownAction, KeyError) as exc:
        return reply(Status.UNKNOWN_ACTION, str(exc).strip("'\""))
    try:
        inputs = action.validate_inputs(request.data)
    except InputValidationError as exc:
        return reply(exc.status, f"invalid inputs: {exc}", {"errors": exc.errors})
    try:
        result = handler(make_context(request), inputs)
    except ActionError as exc:
        return reply(exc.status, str(exc))
    except Exception as exc:
        log.exception(
            "%s.%s failed for request %s", request.agent, request.action, request.requestid
        )
        return reply(Status.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}")
    data = action.output_defaults()
    data.update(result or {})
    return reply(Status.OK, "OK", data)
