"""Reads of the audit history: who may read it, and the timeline's filters in SQL.

Each filter is written so that PostgreSQL can answer it from an index at 1,000,000 events
(see ``models.AuditEvent.Meta.indexes`` and ``migrations/0002_postgresql.py``); SQLite, the
embedded profile's small database, gets equivalent SQL without the special indexes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connections, models
from django.db.models import ExpressionWrapper, F
from django.db.models.expressions import RawSQL

from portal.audit.permissions import can_read_audit
from portal.rbac.policy import User

# The text the search looks in; PostgreSQL has a trigram index on exactly this expression.
PG_SEARCH_TEXT = "(audit_auditevent.summary || ' ' || audit_auditevent.data::text)"
JSON_LIST_COLUMNS = ("nodes", "roles")
PAGE_SIZE = 50
# What a timeline row shows: the page never loads data or nodes (they can be large).
ROW_COLUMNS = (
    "id", "at", "kind", "actor", "roles", "source_ip", "agent", "action", "job_id", "outcome",
    "summary",
)  # fmt: skip


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` escaped (backslash is the escape)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class AuditEventQuerySet(models.QuerySet[Any]):
    def visible_to(self, user: User) -> AuditEventQuerySet:
        """Everything for those who may read the audit history, nothing for anyone else."""
        return self if can_read_audit(user) else self.none()

    @property
    def _vendor(self) -> str:
        return connections[self.db].vendor

    def _contains_string(self, column: str, value: str) -> AuditEventQuerySet:
        """Events whose JSON list ``column`` holds the string ``value``."""
        if self._vendor == "postgresql":
            # jsonb @> uses the GIN index (jsonb_path_ops) on the column.
            return self.filter(**{f"{column}__contains": [value]})
        if column not in JSON_LIST_COLUMNS:
            raise ValueError(f"{column!r} is not a JSON list column of audit events")
        # Fixed SQL text (the column is one of two names); the value is a parameter.
        sql = f"EXISTS (SELECT 1 FROM json_each(audit_auditevent.{column}) WHERE value = %s)"  # noqa: S608
        return self.filter(RawSQL(sql, [value], output_field=models.BooleanField()))  # noqa: S611

    def for_node(self, identity: str) -> AuditEventQuerySet:
        """Events that concern the node (``identity`` in ``nodes``)."""
        return self._contains_string("nodes", identity)

    def with_role(self, role: str) -> AuditEventQuerySet:
        """Events whose actor had ``role`` at the time."""
        return self._contains_string("roles", role)

    def search(self, text: str) -> AuditEventQuerySet:
        """Events whose summary or data (inputs, filters, reason...) contain ``text``, any case."""
        pattern = like_pattern(text)
        if self._vendor == "postgresql":
            # data::text writes " and \ escaped: a search for them looks for that spelling too.
            patterns = list(dict.fromkeys([pattern, like_pattern(_json_escaped(text, False))]))
            sql = " OR ".join(f"{PG_SEARCH_TEXT} ILIKE %s" for _ in patterns)
            # Fixed SQL text; the patterns are parameters.
            return self.filter(RawSQL(f"({sql})", patterns, output_field=models.BooleanField()))  # noqa: S611
        # SQLite keeps JSON as Python wrote it, non-ASCII escaped (\u00e9): look for that too.
        escaped = like_pattern(_json_escaped(text, True))
        return self.filter(
            RawSQL(
                "(audit_auditevent.summary LIKE %s ESCAPE '\\' "
                "OR audit_auditevent.data LIKE %s ESCAPE '\\' "
                "OR audit_auditevent.data LIKE %s ESCAPE '\\')",
                [pattern, pattern, escaped],
                output_field=models.BooleanField(),
            )
        )

    def first_id_at_or_after(self, moment: datetime) -> int | None:
        """The id of the first event at or after ``moment`` (one index probe on (at, id))."""
        return self.filter(at__gte=moment).order_by("at", "id").values_list("id", flat=True).first()

    def between(self, start: datetime | None, end: datetime | None) -> AuditEventQuerySet:
        """Events with ``start <= at < end``, as an id range.

        ``record_event`` never gives an event an earlier time than the one before it, so a time
        range is an id range: two index probes turn it into bounds every other filter's
        (column, id) index can use.
        """
        queryset = self
        if start is not None:
            first = self.model.objects.using(self.db).first_id_at_or_after(start)
            if first is None:
                return self.none()
            queryset = queryset.filter(id__gte=first)
        if end is not None:
            stop = self.model.objects.using(self.db).first_id_at_or_after(end)
            if stop is not None:
                queryset = queryset.filter(id__lt=stop)
        return queryset


def _json_escaped(text: str, ascii_only: bool) -> str:
    """``text`` as it appears inside a JSON string."""
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def keyset_page(
    events: AuditEventQuerySet, before: int | None, after: int | None, *, selective: bool = False
) -> tuple[list[Any], bool, bool]:
    """A page of events newest first, and whether there are newer and older ones.

    ``before``: the page older than that id; ``after``: the page newer than it.
    ``selective``: the filter matches few events spread over all time (a node's history).
    PostgreSQL's estimate for jsonb ``@>`` is ~10 times too high there, so it walks the
    primary key backwards and filters 190,000 rows (113 ms at 1,000,000 events); ordering by
    ``id + 0``, which no index provides, makes it read the GIN matches and sort them (3 ms).
    """
    events = events.only(*ROW_COLUMNS)
    key = (
        ExpressionWrapper(F("id") + 0, output_field=models.BigIntegerField())
        if selective
        else F("id")
    )
    if after is not None:
        page = list(events.filter(id__gt=after).order_by(key.asc())[: PAGE_SIZE + 1])
        has_newer = len(page) > PAGE_SIZE
        return page[:PAGE_SIZE][::-1], has_newer, True
    if before is not None:
        events = events.filter(id__lt=before)
    page = list(events.order_by(key.desc())[: PAGE_SIZE + 1])
    return page[:PAGE_SIZE], before is not None, len(page) > PAGE_SIZE
