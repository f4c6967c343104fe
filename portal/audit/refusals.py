"""Refusals on the record: a job the policy refused, a page or API call answered 403.

Both are security events a manager must be able to find later ("who tried what, and was told
no"), so both are written to the audit history, with two guarantees:

* **Committed on its own.** A refusal is an exception for the caller, and an exception rolls
  back the caller's transaction; the event is therefore written in its own durable
  transaction, and calling these functions inside another transaction is a ``RuntimeError``
  (Django's ``durable`` check) rather than a record silently lost with the rollback.
* **No flood.** A script repeating the same refused request cannot fill the history: at most
  one event per key (who, what, where) per ``REFUSAL_WINDOW``. Repeats within the window are
  counted in ``RefusalWindow`` and written with the key's next event as ``earlier_repeats``
  (with ``previous_event``, the event they repeated).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, router, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from agents.filters import Filter
from portal.audit.chain import clean_text
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent, RefusalWindow
from portal.audit.services import record_event

logger = logging.getLogger(__name__)

REFUSAL_WINDOW = timedelta(seconds=60)
# Bounds on what a refused request may put in the history: the text is the requester's own.
MAX_FILTER = 4096
MAX_REASON = 500
MAX_REASONS = 20
MAX_PATH = 255
MAX_DETAIL = 300


@dataclass
class RequestRefusal:
    """What the denial middleware learns about one request while it is handled."""

    recorded: bool = False  # a refusal event (job.refused) already covers this request
    reason: str = ""  # the PermissionDenied message a view raised, if any


# Set by the middleware for each request and mutated in place (not re-set), so that what the
# view marks is seen by the middleware even across asgiref's thread and context hops.
current_request_refusal: ContextVar[RequestRefusal | None] = ContextVar(
    "switchboard_request_refusal", default=None
)


def _window_key(kind: str, parts: Sequence[str]) -> str:
    # JSON keeps the parts apart whatever they hold: ("a,b", "c") and ("a", "b,c") differ.
    text = json.dumps([kind, *parts], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def record_throttled(
    kind: str, key_parts: Sequence[str], *, data: Mapping[str, Any], **event: Any
) -> AuditEvent | None:
    """Record ``kind`` unless the same key was recorded less than ``REFUSAL_WINDOW`` ago.

    Returns the event, or ``None`` when the refusal was counted as a repeat instead. Runs in
    its own durable transaction (``RuntimeError`` inside another one). ``event`` is passed to
    ``record_event``; ``data`` gains ``earlier_repeats`` and ``previous_event``.
    """
    key = _window_key(kind, key_parts)
    using = router.db_for_write(RefusalWindow)
    windows = RefusalWindow.objects.using(using)
    with transaction.atomic(using=using, durable=True):
        now = timezone.now()
        # The row lock makes concurrent repeats of one key wait for each other (PostgreSQL;
        # SQLite's IMMEDIATE transactions already do): one event per window, exact counts.
        window, created = windows.select_for_update().get_or_create(
            key=key, defaults={"opened_at": now}
        )
        if not created and now - window.opened_at < REFUSAL_WINDOW:
            windows.filter(pk=window.pk).update(repeats=F("repeats") + 1)
            return None
        recorded = record_event(
            kind,
            data={
                **data,
                "earlier_repeats": 0 if created else window.repeats,
                "previous_event": None if created else window.event_id,
            },
            **event,
        )
        windows.filter(pk=window.pk).update(opened_at=now, repeats=0, event_id=recorded.pk)
        if created:
            # Windows with nothing left to report are forgotten, so the table holds only
            # recent keys and keys whose repeats still wait for their next event.
            windows.filter(opened_at__lt=now - REFUSAL_WINDOW, repeats=0).delete()
    return recorded


def typed_filter(job_filter: Filter, filter_text: str | None) -> str:
    """The filter as the requester wrote it: their text when the caller has it, else the
    compound expression alone as typed (the form's case), else the filter's canonical form."""
    if filter_text is not None:
        return filter_text
    only_compound = not (
        job_filter.fact or job_filter.cf_class or job_filter.agent or job_filter.identity
    )
    if only_compound:
        return job_filter.compound or ""
    return job_filter.describe()


def record_refusal(
    *,
    user: AbstractBaseUser,
    source: str,
    agent: str,
    action: str,
    job_filter: Filter,
    filter_text: str | None,
    reasons: Mapping[str, str],
    request: HttpRequest | None = None,
) -> AuditEvent | None:
    """Record a ``job.refused`` event: the policy said no to this request.

    ``filter_text`` is the filter as typed when the caller has it (``None``: taken from
    ``job_filter``, see ``typed_filter``).

    Called by ``jobs.services.authorize_request``, the check every path (form, API, CLI) goes
    through, just before it raises ``JobForbidden``; it marks the current request so the
    denial middleware does not record the same 403 again. The requester's text is bounded. A
    database error is logged, not raised: the requester is still told no.
    """
    typed = typed_filter(job_filter, filter_text)
    bounded_filter = clean_text(typed, MAX_FILTER)
    reason_items = list(reasons.items())[:MAX_REASONS]
    bounded_reasons = {
        clean_text(str(field), 64): clean_text(str(message), MAX_REASON)
        for field, message in reason_items
    }
    first_reason = next(iter(bounded_reasons.values()), "refused")
    refusal = current_request_refusal.get()
    if refusal is not None:
        refusal.recorded = True
    try:
        return record_throttled(
            Kind.JOB_REFUSED,
            (
                user.get_username(),
                source,
                agent,
                action,
                bounded_filter,
                *bounded_reasons.values(),
            ),
            actor=user,
            request=request,
            agent=agent,
            action=action,
            outcome="refused",
            summary=f"{agent} {action} on {bounded_filter or 'every node'} refused: {first_reason}",
            data={
                "source": source,
                "filter": bounded_filter,
                "filter_truncated": len(typed) > len(bounded_filter),
                "reasons": bounded_reasons,
                "refused_by": "policy",
            },
        )
    except DatabaseError:
        # Never turn the 403 into a 500 (a locked or unreachable database); the log says the
        # record is missing. A RuntimeError (called inside a transaction) is a bug: raised.
        logger.exception("could not record the refusal of %s %s to %s", agent, action, user)
        return None


def record_denial(
    request: HttpRequest, user: AbstractBaseUser, status: int, reason: str = ""
) -> AuditEvent | None:
    """Record an ``access.denied`` event: a logged-in user's request was answered ``status``.

    Method, path (without the query string, which may hold anything), status, the view's name
    and the reason the view gave; never the body. Throttled per user, method, path and status.
    """
    method = clean_text(request.method or "", 10)
    path = clean_text(request.path, MAX_PATH)
    match = getattr(request, "resolver_match", None)
    view = clean_text(match.view_name, 150) if match is not None else ""
    detail = clean_text(reason, MAX_DETAIL)
    return record_throttled(
        Kind.ACCESS_DENIED,
        (user.get_username(), method, path, str(status)),
        actor=user,
        request=request,
        outcome="denied",
        summary=f"{method} {path} answered {status}" + (f": {detail}" if detail else ""),
        data={
            "method": method,
            "path": path,
            "path_truncated": len(request.path) > len(path),
            "status": status,
            "view": view,
            "reason": detail,
        },
    )
