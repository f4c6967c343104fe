"""The timeline's filters, read from a query string, checked, and applied to events.

Every page and export of the audit history reads its filters here, so what a manager sees
and what they export are the same events. Bad input is an ``AuditQueryError`` naming the
field, shown with a 400; nothing unchecked reaches SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from portal.audit import kinds
from portal.audit.querysets import AuditEventQuerySet

MAX_TEXT = 200
MAX_ID = 2**63 - 1
# Control characters never appear in what is recorded, and NUL cannot be sent to PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


class AuditQueryError(ValueError):
    """A filter value the audit pages cannot use; ``field`` is the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def checked_text(value: str, name: str, max_length: int = MAX_TEXT) -> str:
    """``value`` stripped, or ``AuditQueryError`` if too long or holding control characters."""
    value = value.strip()
    if len(value) > max_length:
        raise AuditQueryError(name, f"at most {max_length} characters (got {len(value)})")
    if _CONTROL.search(value):
        raise AuditQueryError(name, "control characters cannot be searched for")
    return value


def _text(params: Mapping[str, str], name: str) -> str:
    return checked_text(str(params.get(name, "")), name)


def _moment(params: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS]``, UTC; a date as ``to`` includes that day."""
    text = _text(params, name)
    if not text:
        return None
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                try:
                    moment += timedelta(days=1)
                except OverflowError:
                    return None  # the end of 9999-12-31: no upper bound
            return moment
        if _DATETIME.match(text):
            return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError as exc:
        raise AuditQueryError(name, f"{text!r} is not a valid date ({exc})") from None
    raise AuditQueryError(name, f"{text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM")


def parse_id(params: Mapping[str, str], name: str) -> int | None:
    """A positive event id (a keyset cursor), or ``None``."""
    text = _text(params, name)
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1 or int(text) > MAX_ID:
        raise AuditQueryError(name, f"{text[:20]!r} is not an event id")
    return int(text)


@dataclass(frozen=True)
class TimelineFilter:
    """What a manager asked to see. Empty fields filter nothing."""

    operator: str = ""
    role: str = ""
    agent: str = ""
    action: str = ""
    node: str = ""
    outcome: str = ""
    kind: str = ""
    job: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    q: str = ""
    # As typed, for the form and the links.
    start_text: str = ""
    end_text: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TimelineFilter:
        """Read and check the filters in ``params``; ``AuditQueryError`` on the first bad one."""
        kind = _text(params, "kind")
        if kind and not (kinds.KIND_PATTERN.match(kind.removesuffix(".*")) and len(kind) <= 66):
            raise AuditQueryError("kind", f"{kind[:40]!r} is not an event kind")
        start = _moment(params, "from", end=False)
        end = _moment(params, "to", end=True)
        if start is not None and end is not None and start >= end:
            raise AuditQueryError("to", "the end of the range is before its start")
        return cls(
            operator=_text(params, "operator"),
            role=_text(params, "role"),
            agent=_text(params, "agent"),
            action=_text(params, "action"),
            node=_text(params, "node"),
            outcome=_text(params, "outcome"),
            kind=kind,
            job=parse_id(params, "job"),
            start=start,
            end=end,
            q=_text(params, "q"),
            start_text=_text(params, "from"),
            end_text=_text(params, "to"),
        )

    def apply(self, events: AuditEventQuerySet) -> AuditEventQuerySet:
        """The events matching every filter given (a queryset; nothing is read yet but the
        date range's two id probes)."""
        if self.operator:
            events = events.filter(actor=self.operator)
        if self.role:
            events = events.with_role(self.role)
        if self.agent:
            events = events.filter(agent=self.agent)
        if self.action:
            events = events.filter(action=self.action)
        if self.outcome:
            events = events.filter(outcome=self.outcome)
        if self.kind.endswith(".*"):
            events = events.filter(kind__in=kinds.kinds_in_group(self.kind[:-2]))
        elif self.kind:
            events = events.filter(kind=self.kind)
        if self.job is not None:
            events = events.filter(job_id=self.job)
        if self.node:
            events = events.for_node(self.node)
        if self.q:
            events = events.search(self.q)
        if self.start is not None or self.end is not None:
            events = events.between(self.start, self.end)
        return events

    def as_params(self) -> dict[str, str]:
        """The filters as query-string parameters (only those set)."""
        values = {
            "operator": self.operator,
            "role": self.role,
            "agent": self.agent,
            "action": self.action,
            "node": self.node,
            "outcome": self.outcome,
            "kind": self.kind,
            "job": str(self.job) if self.job is not None else "",
            "from": self.start_text,
            "to": self.end_text,
            "q": self.q,
        }
        return {name: value for name, value in values.items() if value}

    def as_data(self) -> dict[str, Any]:
        """The filters for an audit event's data (the export records what it exported)."""
        return self.as_params()

    def query_string(self, **extra: Any) -> str:
        params = {**self.as_params(), **{k: v for k, v in extra.items() if v not in (None, "")}}
        return "?" + urlencode(params) if params else "?"

    @property
    def is_empty(self) -> bool:
        return not self.as_params()
